"""Downstream fidelity: how much of CLIP's zero-shot behaviour survives the SAE being spliced in.

Three runs over the same labelled images: clean; the site replaced by the SAE reconstruction (no error
term); the site replaced by zeros. Cross-entropy uses the model's zero-shot logits (logit scale
included), and
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

from clipsteer.models.backbone import Backbone


def downstream_fidelity(backbone: Backbone, site: str, reconstruct: Callable[[Tensor], Tensor], pixels: Tensor,
                        labels: Tensor, head: Tensor, batch: int = 128) -> dict:
    """pixels [N, 3, S, S], labels [N] class indices into head [C, E]; reconstruct: [B, T, d] → [B, T, d]."""
    labels = labels.to(backbone.device).long()
    runs: dict[str, Tensor] = {"clean": backbone.encode_image(pixels, batch)}
    with backbone.intervene(site, reconstruct):
        runs["sae"] = backbone.encode_image(pixels, batch)
    with backbone.intervene(site, torch.zeros_like):
        runs["zero"] = backbone.encode_image(pixels, batch)
    out: dict[str, float] = {}
    for name, emb in runs.items():
        logits = backbone.zero_shot_logits(emb, head)
        out[f"ce_{name}"] = float(F.cross_entropy(logits, labels))
        out[f"accuracy_{name}"] = float((logits.argmax(-1) == labels).float().mean())
    gap = out["ce_zero"] - out["ce_clean"]
    out["ce_recovered_pct"] = 100 * (out["ce_zero"] - out["ce_sae"]) / gap if gap > 0 else float("nan")
    out["embedding_cosine_sae"] = float(F.cosine_similarity(runs["sae"], runs["clean"], dim=-1).mean())
    return out
