"""The skeleton shared by `debias` and `typographic-defense`: select features → suppress → measure.

1. **Capture** a split's activations at the site once (`capture_site`, [N, T, d]).
2. **Select**: image-level feature scores (`image_scores`: max over the chosen tokens, or over a
   per-image token mask) feed a statistic (AUROC from `evaluate.auroc`); `rank_features` keeps the
   features that pass a target-information filter and orders them by the statistic.
3. **Suppress** the top k with `suppression_fn` — one `steer.interventions.Edit` (ablate or
   mean-ablate) through `edit_fn`, delta form by default — and **measure** by resuming the forward
   from the site (`embed`), which equals running `with suppressed(...): backbone.encode_image(...)`
   (tested) but reuses the captured prefix for every candidate k.
4. **Choose** k and tokens on a validation split (`choose`), report on the test split.

Controls use the same functions with another dictionary (`DirectionSet.neurons`) or random features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from clipsteer.data.protocol import LABEL, ImageDataset, NamedLabelledDataset
from clipsteer.evaluate.auroc import auroc
from clipsteer.models.backbone import Backbone, SiteFn, TokenSelection
from clipsteer.steer.dictionary import LinearDictionary
from clipsteer.steer.interventions import Edit, Form, edit_fn

SuppressOp = Literal["ablate", "mean_ablate"]


@dataclass(frozen=True)
class FeatureSelection:
    n_features: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """Candidate k (how many top-ranked features to suppress); k is chosen on the validation split."""
    tokens: tuple[TokenSelection, ...] = ("all", "patches")
    """Candidate tokens to suppress on (also the tokens whose max gives an image's feature score)."""
    op: SuppressOp = "ablate"
    """ablate: set the codes to 0; mean_ablate: to their mean over the selection split's tokens."""
    form: Form = "delta"
    """delta keeps the dictionary's reconstruction error (h + dec(f') − dec(f)); replace drops it."""
    max_target_information: float = 0.1
    """Keep only features with |AUROC − 0.5| ≤ this for the target label (see each command's statistic)."""


@dataclass(frozen=True)
class Ranking:
    """Features ordered best first, with the statistic that ordered them and the filter's value."""

    features: Tensor  # int64 [n] (only those that pass the filter and score above chance)
    statistic: Tensor  # float [F], for every feature
    target_information: Tensor  # float [F]


@dataclass(frozen=True)
class Choice:
    """A candidate (k, tokens) and its validation metrics."""

    k: int
    tokens: TokenSelection
    metrics: dict[str, float] = field(default_factory=dict)


def load_pixels(backbone: Backbone, dataset: ImageDataset, indices: Sequence[int]) -> Tensor:
    """Images at `indices` preprocessed by the model: [N, 3, S, S]."""
    return backbone.pixels([dataset.load(int(i)) for i in indices])


@torch.no_grad()
def capture_sites(backbone: Backbone, dataset: ImageDataset, indices: Sequence[int], sites: Sequence[str],
                  images_per_batch: int = 256, desc: str = "capture") -> dict[str, Tensor]:
    """Activations at each site (one forward per batch) of the images at `indices`:
    {site: [N, T, d]} (float32, on the CPU, keyed by the names given)."""
    chunks: dict[str, list[Tensor]] = {site: [] for site in sites}
    for start in tqdm(range(0, len(indices), images_per_batch), desc=desc, leave=False):
        pixels = load_pixels(backbone, dataset, indices[start:start + images_per_batch])
        captured = backbone.capture(pixels, list(sites))
        for site in sites:
            chunks[site].append(captured[backbone.site(site).name].float().cpu())
    return {site: torch.cat(parts) for site, parts in chunks.items()}


@torch.no_grad()
def embed(backbone: Backbone, site: str, hidden: Tensor, fn: SiteFn | None = None,
          images_per_batch: int = 256) -> Tensor:
    """Image embeddings [N, E] resumed from `site` with hidden [N, T, d] edited by `fn` (None: unedited)."""
    out = []
    for start in range(0, len(hidden), images_per_batch):
        h = hidden[start:start + images_per_batch].to(backbone.device, backbone.dtype)
        out.append(backbone.encode_from(site, fn(h) if fn is not None else h).float().cpu())
    return torch.cat(out)


def token_masks(tokens: TokenSelection, n_tokens: int) -> Tensor:
    """bool [T] for a named token selection (CLS is index 0)."""
    mask = torch.zeros(n_tokens, dtype=torch.bool)
    mask[{"all": slice(None), "cls": slice(0, 1), "patches": slice(1, None)}[tokens]] = True
    return mask


@torch.no_grad()
def image_scores(dictionary: LinearDictionary, hidden: Tensor, masks: Tensor,
                 tokens_per_batch: int = 16384) -> Tensor:
    """Per image, each feature's max code over the tokens in `masks`: hidden [N, T, d], masks bool [T]
    or [N, T] → [N, F]. Images whose mask is empty score −inf (callers drop them)."""
    n, t, _ = hidden.shape
    masks = masks.expand(n, t) if masks.ndim == 1 else masks
    assert masks.shape == (n, t), f"masks {tuple(masks.shape)} for hidden {tuple(hidden.shape)}"
    step = max(1, tokens_per_batch // t)
    out = []
    for start in range(0, n, step):
        codes = dictionary.codes(hidden[start:start + step]).float()  # [b, T, F]
        m = masks[start:start + step, :, None]
        out.append(codes.masked_fill(~m, float("-inf")).amax(dim=1))
    return torch.cat(out)


@torch.no_grad()
def mean_codes(dictionary: LinearDictionary, hidden: Tensor, mask: Tensor,
               tokens_per_batch: int = 16384) -> Tensor:
    """Mean code of each feature over the selected tokens (mask bool [T]) of hidden [N, T, d] → [F]."""
    step = max(1, tokens_per_batch // hidden.shape[1])
    total, count = None, 0
    for start in range(0, len(hidden), step):
        codes = dictionary.codes(hidden[start:start + step][:, mask]).float()
        part = codes.sum(dim=(0, 1))
        total = part if total is None else total + part
        count += codes.shape[0] * codes.shape[1]
    assert total is not None and count > 0
    return total / count


def within_auroc(scores: Tensor, positive: np.ndarray, strata: np.ndarray) -> Tensor:
    """Mean over strata s of |AUROC(scores | stratum s, positive) − 0.5|: [N, F] → [F].

    Stratifying on the other label removes what the two labels share, so a feature is credited only
    for what it says about `positive` among images with the same value of the other label."""
    values = []
    for s in np.unique(strata):
        keep = torch.from_numpy(strata == s)
        target = torch.from_numpy(positive[strata == s].astype(bool))
        if target.all() or not target.any():
            raise ValueError(f"stratum {s} has only one value of the attribute; the selection split needs both "
                             f"values within every class")
        values.append((auroc(scores[keep], target) - 0.5).abs())
    return torch.stack(values).mean(dim=0)


def rank_features(statistic: Tensor, target_information: Tensor, max_target_information: float,
                  chance: float = 0.0) -> Ranking:
    """Features with target_information ≤ the bound and statistic > chance, best first."""
    ok = (target_information <= max_target_information) & (statistic > chance)
    order = torch.argsort(statistic, descending=True, stable=True)
    return Ranking(order[ok[order]], statistic, target_information)


def suppression_fn(dictionary: LinearDictionary, features: Sequence[int], tokens: TokenSelection | Tensor,
                   op: SuppressOp = "ablate", means: Tensor | None = None, form: Form = "delta") -> SiteFn:
    """A site function suppressing `features` on `tokens`; the identity for an empty feature list."""
    if len(features) == 0:
        return lambda h: h
    return edit_fn(dictionary, [Edit(tuple(int(j) for j in features), op=op, tokens=tokens,
                                     means=means if op == "mean_ablate" else None)], form)


@contextmanager
def suppressed(backbone: Backbone, dictionary: LinearDictionary, site: str, features: Sequence[int],
               tokens: TokenSelection | Tensor, op: SuppressOp = "ablate", means: Tensor | None = None,
               form: Form = "delta") -> Iterator[None]:
    """Within the block, every forward of `backbone` runs with `features` suppressed at `site`."""
    with backbone.intervene(site, suppression_fn(dictionary, features, tokens, op, means, form)):
        yield


class PromptClassifier:
    """Zero-shot classifier over label values that may each stand for several prompt names.

    prompts[v] = names prompted for label value v; the predicted label is the value whose name scores
    the highest logit (so with one name per value it is CLIP's plain zero-shot classifier)."""

    def __init__(self, backbone: Backbone, prompts: Sequence[Sequence[str]], templates: Sequence[str]):
        names = [n for group in prompts for n in group]
        self.label_of = torch.tensor([v for v, group in enumerate(prompts) for _ in group])
        self.backbone = backbone
        self.head = backbone.zero_shot_head(names, tuple(templates)).cpu()  # [C', E]

    def logits(self, embeddings: Tensor) -> Tensor:
        """[N, E] → per prompt name [N, C']."""
        return self.backbone.logit_scale * embeddings.float() @ self.head.float().T

    def predict(self, embeddings: Tensor) -> np.ndarray:
        """[N, E] → predicted label values int64 [N]."""
        return self.label_of[self.logits(embeddings).argmax(dim=1)].numpy()


def prompts_of(dataset: NamedLabelledDataset) -> tuple[tuple[str, ...], ...]:
    """Per label value, the names to prompt: `dataset.label_prompts()` if it has them, else its name."""
    fn = getattr(dataset, "label_prompts", None)
    return tuple(fn()) if callable(fn) else tuple((n,) for n in dataset.label_names()[LABEL])


def patch_token_masks(masks: Sequence[np.ndarray], grid: int) -> Tensor:
    """Pixel masks bool [H, W] (square, as rendered at the model's size) → token masks bool [N, 1 + grid²]
    marking the patches that hold any masked pixel (CLS never marked)."""
    out = torch.zeros(len(masks), 1 + grid * grid, dtype=torch.bool)
    for i, mask in enumerate(masks):
        h, w = mask.shape
        if h != w:
            raise ValueError(f"text mask {i} is {h}×{w}; expected a square mask at the model's input size")
        if h % grid:  # not a whole number of pixels per patch: resample to the nearest multiple first
            side = grid * -(-h // grid)
            mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST))
            h = side
        pooled = mask.reshape(grid, h // grid, grid, h // grid).any(axis=(1, 3))
        out[i, 1:] = torch.from_numpy(pooled.reshape(-1))
    return out


def choose(candidates: Sequence[Choice], key: Callable[[Choice], float],
           allowed: Callable[[Choice], bool]) -> Choice:
    """The allowed candidate with the highest key (ties: the first, i.e. the smallest k); if none is
    allowed, the first candidate (k = 0 when the caller lists it first)."""
    best = None
    for c in candidates:
        if allowed(c) and (best is None or key(c) > key(best)):
            best = c
    return best if best is not None else candidates[0]


def top_label_concepts(dataset: NamedLabelledDataset, images: Sequence[int]) -> dict[str, tuple[str, float]]:
    """Per label column, the most common value among `images` (e.g. a feature's top-activating images)
    and the fraction of them that have it: what the feature's strongest images share."""
    out = {}
    names = dataset.label_names()
    for column, values in dataset.labels().items():
        picked = values[np.asarray(images, dtype=np.int64)]
        picked = picked[picked >= 0]
        if len(picked):
            top = int(np.bincount(picked).argmax())
            out[column] = (names[column][top], float((picked == top).mean()))
    return out


def random_features(alive: Tensor, k: int, generator: torch.Generator) -> list[int]:
    """k features drawn without replacement from the alive ones (bool [F])."""
    pool = torch.nonzero(alive).flatten()
    if k > len(pool):
        raise ValueError(f"cannot draw {k} random features from {len(pool)} alive ones")
    return pool[torch.randperm(len(pool), generator=generator)[:k]].tolist()
