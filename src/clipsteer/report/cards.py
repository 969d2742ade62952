"""Feature cards as data: top-activating images, patch maps and firing frequency of chosen features.

`collect_cards` makes one pass over a store's images in harvest order. Per chosen feature it keeps a
running top-k of image-level activations (max over the image's tokens) with each top image's patch
map, so memory is bounded by features × k × grid² whatever the store's size. Firing frequencies are
counted for every feature on the way (the share of tokens on which the feature is non-zero, as
`clipsteer eval` counts them), and reconstruction numbers are accumulated with the evaluation's own
meter, so the report has SAE quality numbers even for a run that was never evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from clipsteer.activations.ordered import OrderedLoader
from clipsteer.evaluate.reconstruction import ReconstructionMeter
from clipsteer.sae.model import SparseAutoencoder


@dataclass(frozen=True)
class FeatureCard:
    feature: int
    frequency: float
    """Share of tokens on which the feature fires."""
    image_frequency: float
    """Share of images on which it fires on at least one token."""
    top_images: tuple[int, ...]
    """Dataset indices, strongest first (only images where the feature fires)."""
    top_values: tuple[float, ...]
    patch_maps: tuple[np.ndarray, ...]
    """[grid, grid] float32 per top image (empty when the store holds no patch tokens)."""
    steerability: float | None = None
    power: float | None = None
    top_concept: str | None = None
    steerable: bool | None = None
    factor_aurocs: dict[str, float] = field(default_factory=dict)
    """factor → image-level AUROC (world runs only)."""
    concept_matches_factor: bool = False


@dataclass(frozen=True)
class CardPass:
    """What one pass over the store gives: the cards, every feature's frequency, reconstruction numbers."""

    cards: list[FeatureCard]
    frequencies: np.ndarray
    """[d_sae] share of tokens on which each feature fires."""
    reconstruction: dict
    """`ReconstructionMeter.result()` on the store's tokens."""
    n_images: int


def patch_layout(loader: OrderedLoader) -> tuple[bool, int]:
    """(whether token 0 is CLS, patch grid side) of the loader's rows; grid 0 when no patch tokens."""
    tokens = loader.store.meta.spec.tokens
    has_cls = tokens in ("all", "cls")
    n_patches = loader.tokens_per_image - (1 if has_cls else 0)
    grid = int(round(n_patches ** 0.5))
    if grid * grid != n_patches:
        raise ValueError(f"{loader.store.directory}: {n_patches} patch tokens per image do not form a square grid")
    return has_cls, grid


@torch.no_grad()
def collect_cards(sae: SparseAutoencoder, loader: OrderedLoader, features: Sequence[int], top_k: int = 8,
                  tokens_per_batch: int = 8192, device: str = "cpu", progress: bool = True) -> CardPass:
    """One pass over `loader` (see the module docstring). Activations are read as float32 [B, T, d]."""
    if loader.d_in != sae.d_in:
        raise ValueError(f"{loader.store.directory}: the store holds d_model={loader.d_in} activations but the "
                         f"SAE reads d_in={sae.d_in}")
    chosen = torch.as_tensor(list(features), dtype=torch.long)
    if len(chosen) and (int(chosen.min()) < 0 or int(chosen.max()) >= sae.d_sae):
        raise ValueError(f"feature indices must lie in 0..{sae.d_sae - 1}, got {list(features)}")
    if len(loader) == 0:
        raise ValueError(f"{loader.store.directory}: the store holds no images")
    has_cls, grid = patch_layout(loader)
    n_cards, t = len(chosen), loader.tokens_per_image
    values = torch.full((n_cards, top_k), -torch.inf)          # running top-k, [K, k]
    images = torch.full((n_cards, top_k), -1, dtype=torch.long)
    maps = torch.zeros(n_cards, top_k, grid, grid)
    image_fires = torch.zeros(n_cards)
    meter = ReconstructionMeter(sae.d_sae)
    images_per_batch = max(1, tokens_per_batch // t)
    batches = loader.batches(images_per_batch)
    for indices, x in tqdm(batches, total=-(-len(loader) // images_per_batch), desc="feature cards",
                           disable=not progress, leave=False):
        x = x.to(device)
        out = sae(x.reshape(-1, sae.d_in))
        codes = out.codes.reshape(len(indices), t, sae.d_sae)   # [B, T, F]
        meter.update(x, out.reconstruction.reshape(x.shape), codes, has_cls=has_cls)
        card_codes = codes[..., chosen.to(codes.device)].float().cpu()  # [B, T, K]
        image_max = card_codes.amax(dim=1).T                   # [K, B]
        image_fires += (image_max > 0).sum(dim=1)
        all_values = torch.cat([values, image_max], dim=1)      # [K, k + B]
        top = all_values.topk(min(top_k, all_values.shape[1]), dim=1)
        values = top.values
        images = torch.cat([images, indices[None].expand(n_cards, -1)], dim=1).gather(1, top.indices)
        if grid:
            patches = card_codes[:, 1:] if has_cls else card_codes  # [B, P, K]
            batch_maps = patches.permute(2, 0, 1).reshape(n_cards, len(indices), grid, grid)
            all_maps = torch.cat([maps, batch_maps], dim=1)     # [K, k + B, g, g]
            maps = all_maps[torch.arange(n_cards)[:, None], top.indices]
    frequencies = meter.frequencies().numpy()
    cards = []
    for i, j in enumerate(chosen.tolist()):
        fired = values[i] > 0
        cards.append(FeatureCard(
            feature=j, frequency=float(frequencies[j]), image_frequency=float(image_fires[i]) / len(loader),
            top_images=tuple(int(v) for v in images[i][fired]), top_values=tuple(float(v) for v in values[i][fired]),
            patch_maps=tuple(m.numpy() for m in maps[i][fired]) if grid else ()))
    return CardPass(cards, frequencies, meter.result(), len(loader))


def choose_features(d_sae: int, scored: Sequence[tuple[int, float]], required: Sequence[int], n_cards: int
                    ) -> list[int]:
    """Features that get a card: `required` ones first (e.g. suppressed features), then the scored ones by
    decreasing steerability, then evenly spaced features to fill `n_cards` (in index order)."""
    chosen = list(dict.fromkeys(int(j) for j in required))
    for j, _ in sorted(scored, key=lambda js: -js[1]):
        if len(chosen) >= n_cards:
            break
        if j not in chosen:
            chosen.append(int(j))
    if len(chosen) < n_cards:
        spaced = torch.linspace(0, d_sae - 1, min(n_cards, d_sae)).round().long().tolist()
        chosen += [j for j in dict.fromkeys(spaced) if j not in chosen][: n_cards - len(chosen)]
    return chosen
