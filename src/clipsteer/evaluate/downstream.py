"""Downstream fidelity: how much of CLIP's zero-shot behaviour survives the SAE being spliced in.

Runs over the same images: clean; the site replaced by the SAE reconstruction (no error term); and,
with labels, the site replaced by zeros. Always: embedding cosine (SAE vs clean), the mean
KL(clean ‖ SAE) of the zero-shot distribution over the given classes, and argmax agreement. With labels,
cross-entropy uses the model's zero-shot logits (logit scale included), and
    % CE recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean) · 100
as ViT-Prisma reports it (values above 100 mean the reconstruction lowers the loss). Prisma computes
CE from unscaled cosine logits, which squeezes every CE towards ln C; the scaled logits used here are
the ones CLIP actually classifies with.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from clipsteer.evaluate.results import Downstream
from clipsteer.models.backbone import Backbone


@torch.no_grad()
def downstream_fidelity(backbone: Backbone, site: str, reconstruct: Callable[[Tensor], Tensor], pixels: Tensor,
                        head: Tensor, classes: tuple[str, ...], labels: Tensor | None = None,
                        images_per_batch: int = 128) -> Downstream:
    """pixels [N, 3, S, S]; head [C, E] for `classes`; labels [N] class indices or None;
    reconstruct: [B, T, d] → [B, T, d]."""
    assert head.shape[0] == len(classes), (tuple(head.shape), len(classes))
    runs = {"clean": backbone.encode_image(pixels, images_per_batch)}
    with backbone.intervene(site, reconstruct):
        runs["sae"] = backbone.encode_image(pixels, images_per_batch)
    logits = {name: backbone.zero_shot_logits(emb, head).float() for name, emb in runs.items()}
    log_p = {name: F.log_softmax(value, dim=-1) for name, value in logits.items()}
    kl = (log_p["clean"].exp() * (log_p["clean"] - log_p["sae"])).sum(-1).mean()
    scores: dict[str, float] = {}
    if labels is not None:
        with backbone.intervene(site, torch.zeros_like):
            logits["zero"] = backbone.zero_shot_logits(backbone.encode_image(pixels, images_per_batch), head).float()
        labels = labels.to(backbone.device).long()
        ce = {name: float(F.cross_entropy(value, labels)) for name, value in logits.items()}
        scores = {f"accuracy_{name}": float((value.argmax(-1) == labels).float().mean())
                  for name, value in logits.items()}
        gap = ce["zero"] - ce["clean"]
        scores["ce_recovered_pct"] = 100 * (ce["zero"] - ce["sae"]) / gap if gap > 0 else None
    return Downstream(
        n_images=len(pixels), classes=tuple(classes),
        embedding_cosine=float(F.cosine_similarity(runs["sae"], runs["clean"], dim=-1).mean()),
        kl_zero_shot=float(kl), agreement=float((logits["sae"].argmax(-1) == logits["clean"].argmax(-1)).float().mean()),
        **scores)
