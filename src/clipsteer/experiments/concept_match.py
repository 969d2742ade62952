"""Do steerable features steer towards what they detect? (synthetic world only)

For each steerable SAE feature, its top concept (the word its clamping pushes CLIP towards) is compared
with the ground-truth factors the feature detects (image-level AUROC ≥ `threshold` on world images).
A match means the word names a detected factor: `star` ↔ shape:star or word:star, `red` ↔ colour:red,
`water`/`sea`/`pond` ↔ background:water, and so on.
"""

from __future__ import annotations

import torch

from clipsteer.evaluate.factors import factor_auroc_table
from clipsteer.models.backbone import Backbone
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.world.dataset import WorldDataset
from clipsteer.world.factor_labels import image_factors
from clipsteer.world.factors import BACKGROUNDS


def factor_value(concept: str) -> str:
    """The factor value a vocabulary word names (background types name their family)."""
    return BACKGROUNDS.get(concept, concept)


@torch.no_grad()
def concept_matches(backbone: Backbone, sae: SparseAutoencoder, site: str, rows: list[dict], n_images: int = 1000,
                    threshold: float = 0.8, batch_size: int = 100) -> dict:
    """rows: steerability rows ({feature, steerability, top_concept, steerable}); returns matches and a summary."""
    steerable = [r for r in rows if r["steerable"]]
    if not steerable:
        return {"n_steerable": 0, "n_matched": 0, "matches": []}
    columns = torch.tensor([r["feature"] for r in steerable])
    dataset = WorldDataset("pretraining", "test", n=n_images)
    acts, labels = [], []
    for start in range(0, n_images, batch_size):
        batch = dataset.arrays(start, min(start + batch_size, n_images))
        x = backbone.capture(backbone.pixels(batch.images), [site])[site]
        acts.append(sae.encode(x)[..., columns].amax(dim=1))
        labels.append({k: torch.as_tensor(v) for k, v in image_factors(batch).items()})
    factors = {k: torch.cat([part[k] for part in labels]) for k in labels[0]}
    names, table = factor_auroc_table(torch.cat(acts), factors)  # [K, len(steerable)]
    out = []
    for col, row in enumerate(steerable):
        detected = {names[k]: round(float(table[k, col]), 3) for k in range(len(names)) if table[k, col] >= threshold}
        value = factor_value(row["top_concept"])
        out.append({**row, "detects": detected,
                    "matches": [name for name in detected if name.split(":", 1)[1] == value]})
    matched = [r for r in out if r["matches"]]
    return {"n_steerable": len(out), "n_matched": len(matched),
            "examples": sorted(matched, key=lambda r: -r["steerability"])[:10], "all": out}
