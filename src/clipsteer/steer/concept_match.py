"""Do steerable units steer towards what they detect? Concept match against its shuffled baseline.

Needs ground truth, so it runs only where the vocabulary says which factors each concept names
(`ConceptVocabulary.factors`) and a labelled image source gives those factors per image (a dataset
implementing `clipsteer.data.protocol.ConceptAnnotated`, e.g. the synthetic world). A unit *detects* a
factor when its image-level activation (max over tokens) has AUROC ≥ `threshold` for it; it *matches*
when its top concept names at least one factor it detects.

The baseline: the same units with their top concepts permuted among them (`n_shuffles` permutations,
seeded), which keeps how often each concept is a top concept and breaks only the pairing with the
unit. A match rate well above the shuffled one means steering goes where detection is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from clipsteer.data.protocol import ConceptAnnotated
from clipsteer.evaluate.factors import factor_auroc_table
from clipsteer.models.backbone import Backbone
from clipsteer.steer.dictionary import LinearDictionary
from clipsteer.steer.results import ConceptMatch


@torch.no_grad()
def labelled_activations(backbone: Backbone, site: str, dataset: ConceptAnnotated, n_images: int,
                         images_per_batch: int = 100) -> tuple[list[Tensor], dict[str, Tensor]]:
    """Site activations of the first n labelled images (batches of [b, T, d]) and their labels {name: bool [n]}."""
    if len(dataset) < n_images:  # type: ignore[arg-type]
        raise ValueError(f"concept match needs {n_images} labelled images; the source has {len(dataset)}")  # type: ignore[arg-type]
    acts, labels = [], []
    name = backbone.site(site).name
    for start in tqdm(range(0, n_images, images_per_batch), desc="concept match images", leave=False):
        stop = min(start + images_per_batch, n_images)
        pixels = backbone.pixels([dataset.load(i) for i in range(start, stop)])  # type: ignore[attr-defined]
        acts.append(backbone.capture(pixels, [site])[name])
        labels.append(dataset.concept_labels(start, stop))
    factors = {key: torch.as_tensor(np.concatenate([part[key] for part in labels])) for key in labels[0]}
    return acts, factors


@torch.no_grad()
def image_codes(acts: list[Tensor], dictionary: LinearDictionary, features: Tensor) -> Tensor:
    """Image-level codes [n, K] (max over tokens) of `features` from site activations (batches of [b, T, d])."""
    return torch.cat([dictionary.codes(x)[..., features].amax(dim=1).float() for x in acts])


def detected_factors(codes: Tensor, factors: dict[str, Tensor], threshold: float = 0.8) -> list[dict[str, float]]:
    """codes [n, K], labels {name: bool [n]} → per unit, the factors it detects (AUROC ≥ threshold) with their AUROC."""
    names, table = factor_auroc_table(codes, factors)  # [n_factors, K]
    return [{names[i]: round(float(table[i, k]), 4) for i in range(len(names)) if table[i, k] >= threshold}
            for k in range(codes.shape[1])]


def concept_match(top_concepts: Sequence[int], detected: Sequence[dict[str, float] | frozenset[str]],
                  concept_factors: Sequence[frozenset[str]], n_shuffles: int = 200, seed: int = 0) -> ConceptMatch:
    """Match rate of units (top concept index, detected factors) and its shuffled baseline."""
    if len(top_concepts) != len(detected):
        raise ValueError(f"{len(top_concepts)} top concepts for {len(detected)} units")
    n = len(top_concepts)
    if n == 0:
        return ConceptMatch(0, 0, 0.0, 0.0)
    sets = [frozenset(d) for d in detected]

    def matched(order: Sequence[int]) -> np.ndarray:
        return np.array([bool(concept_factors[top_concepts[j]] & sets[i]) for i, j in enumerate(order)])

    hits = matched(range(n))
    rng = np.random.default_rng(seed)
    shuffled = float(np.mean([matched(rng.permutation(n)).mean() for _ in range(n_shuffles)]))
    return ConceptMatch(n, int(hits.sum()), float(hits.mean()), shuffled)
