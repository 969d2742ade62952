"""The short public API: load a model and an SAE, read feature activations, find a feature's top images,
steer or suppress features in a `with` block.

    import clipsteer as cs
    model, sae = cs.load(sae="runs/sae/saes/topk_x16_k32")            # model: the toy CLIP by default
    images = cs.open_dataset("world:zero_shot/test:64")
    codes = cs.features(model, sae, [images.load(i) for i in range(8)])   # [8, T, d_sae]
    top = cs.top_images(model, sae, images, feature=12, k=5)           # [(index, activation), ...]
    with cs.steering(model, sae, {12: 40.0}):                          # clamp feature 12 to 40 on every token
        probs = model.zero_shot_logits(model.encode_image(model.pixels(...)), head).softmax(-1)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from clipsteer.data.protocol import ImageDataset
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.models.preprocess import ImageLike
from clipsteer.models.sites import TokenSelection
from clipsteer.sae.model import SparseAutoencoder


def load(model: str | Path | None = None, sae: str | Path | None = None,
         device: str = "cpu") -> tuple[Backbone, SparseAutoencoder | None]:
    """(model, SAE): a CLIP folder / hub id / `clipsteer:toy_clip` (default) and an SAE in any supported format."""
    from clipsteer.sae.loading import load_any_sae

    backbone = Backbone.from_pretrained(resolve_model(str(model) if model else None), device=device)
    loaded = load_any_sae(sae, device=device).eval() if sae is not None else None
    if loaded is not None:
        if loaded.d_in != backbone.d_model:
            raise ValueError(f"SAE {sae} reads d_in = {loaded.d_in}, but {backbone.name} has d_model = {backbone.d_model}")
        if loaded.config.site is None:
            raise ValueError(f"SAE {sae} records no hook site; set sae.config.site before using it here")
        backbone.site(loaded.config.site)  # validates the site against this model
    return backbone, loaded


def _site(sae: SparseAutoencoder, site: str | None) -> str:
    chosen = site or sae.config.site
    if chosen is None:
        raise ValueError("give site=...: the SAE's config records none")
    return chosen


@torch.no_grad()
def features(model: Backbone, sae: SparseAutoencoder, images: Sequence[ImageLike] | Tensor,
             site: str | None = None, tokens: TokenSelection = "all") -> Tensor:
    """Feature activations [N, T, d_sae] of images (paths, PIL images, or preprocessed pixels [N, 3, S, S])."""
    site = _site(sae, site)
    pixels = images if isinstance(images, Tensor) else model.pixels(list(images))
    x = model.capture(pixels, [site], tokens=tokens)[model.site(site).name]  # [N, T, d]
    return sae.encode(x)


@torch.no_grad()
def top_images(model: Backbone, sae: SparseAutoencoder, dataset: ImageDataset, feature: int, k: int = 16,
               n_images: int | None = None, images_per_batch: int = 64, site: str | None = None) -> list[tuple[int, float]]:
    """The `k` images of `dataset` (first `n_images`) where `feature` fires most (max over tokens), strongest first."""
    if not 0 <= feature < sae.d_sae:
        raise ValueError(f"feature {feature} out of range: this SAE has {sae.d_sae} features")
    n = len(dataset) if n_images is None else min(n_images, len(dataset))
    best: list[tuple[float, int]] = []  # a min-heap of (activation, index) keeps memory at k entries
    for start in range(0, n, images_per_batch):
        indices = range(start, min(start + images_per_batch, n))
        codes = features(model, sae, [dataset.load(i) for i in indices], site=site)[..., feature]  # [b, T]
        for i, value in zip(indices, codes.amax(dim=1).tolist(), strict=True):
            if len(best) < k:
                heapq.heappush(best, (value, i))
            elif value > best[0][0]:
                heapq.heapreplace(best, (value, i))
    return [(i, v) for v, i in sorted(best, reverse=True)]


@contextmanager
def steering(model: Backbone, sae: SparseAutoencoder, clamp: Mapping[int, float], tokens: TokenSelection = "all",
             site: str | None = None) -> Iterator[None]:
    """Clamp features to values (`{feature: value}`; 0 suppresses) on `tokens` in every forward inside the block.
    Delta form: the SAE's reconstruction error is kept, so the rest of the activation is untouched."""
    from clipsteer.steer.interventions import Edit, steer
    from clipsteer.steer.sae_adapter import SAEDictionary

    edits = [Edit(features=(int(j),), op="clamp", value=float(v), tokens=tokens) for j, v in clamp.items()]
    with steer(model, {_site(sae, site): (SAEDictionary(sae), edits)}):
        yield


@contextmanager
def suppressing(model: Backbone, sae: SparseAutoencoder, features: Sequence[int], tokens: TokenSelection = "all",
                site: str | None = None) -> Iterator[None]:
    """Ablate features (set them to 0) on `tokens` inside the block."""
    with steering(model, sae, dict.fromkeys(features, 0.0), tokens=tokens, site=site):
        yield
