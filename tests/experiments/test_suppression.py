"""The suppression skeleton: the selection statistic on a case with a known answer, k = 0 is zero-shot
exactly, and the resumed-forward measurement equals a plain forward inside `suppressed`."""

from __future__ import annotations

import numpy as np
import torch

from clipsteer.experiments.debias import SplitData, rank_spurious
from clipsteer.experiments.suppression import (
    PromptClassifier,
    capture_sites,
    embed,
    image_scores,
    patch_token_masks,
    suppressed,
    suppression_fn,
    token_masks,
)
from clipsteer.models.testing import tiny_backbone
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.steer.dictionary import DirectionSet
from clipsteer.steer.sae_adapter import SAEDictionary


def skewed_split(n_per_group: dict[tuple[int, int], int], seed: int = 0):
    """A Waterbirds-like split where label and spurious agree for most images."""
    label, spurious = [], []
    for (y, a), n in n_per_group.items():
        label += [y] * n
        spurious += [a] * n
    return np.array(label), np.array(spurious)


def test_statistic_ranks_the_spurious_feature_first_and_filters_the_class_feature() -> None:
    """Neuron j's activation is the feature: 0 = spurious + noise, 1 = the class, 2 = noise,
    3 = class + spurious (it carries target information: filtered out). On a 90 %-aligned split the
    class feature looks spurious without stratification; with it, it is ranked last or dropped."""
    label, spurious = skewed_split({(0, 0): 900, (0, 1): 100, (1, 0): 100, (1, 1): 900})
    rng = np.random.default_rng(0)
    n = len(label)
    feats = np.stack([spurious + 0.3 * rng.random(n), label + 0.3 * rng.random(n), rng.random(n),
                      label + spurious + 0.3 * rng.random(n)], axis=1).astype(np.float32)
    hidden = torch.zeros(n, 3, 4)
    hidden[:, 1] = torch.from_numpy(feats)  # one patch holds the features; CLS and the other patch are 0
    split = SplitData(dataset=None, indices=np.arange(n), label=label, spurious=spurious,  # type: ignore[arg-type]
                      group=2 * label + spurious)
    ranking = rank_spurious(DirectionSet.neurons(4), hidden, split, "patches", max_target_information=0.1)
    assert ranking.features.tolist()[0] == 0
    assert 1 not in ranking.features.tolist() and 3 not in ranking.features.tolist()
    assert abs(float(ranking.statistic[0]) - 0.5) < 1e-6  # perfect separation within each class
    assert float(ranking.target_information[1]) > 0.45 and float(ranking.statistic[1]) < 0.2


def test_image_scores_respect_per_image_masks() -> None:
    hidden = torch.tensor([[[0.0, 5.0], [1.0, 0.0], [3.0, 2.0]]])  # [1, T=3, d=2]
    scores = image_scores(DirectionSet.neurons(2), hidden, torch.tensor([[False, True, False]]))
    assert scores.tolist() == [[1.0, 0.0]]
    assert image_scores(DirectionSet.neurons(2), hidden, token_masks("all", 3)).tolist() == [[3.0, 5.0]]


def test_patch_token_masks_pool_pixels_onto_the_grid() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[9, 2] = True  # patch row 2 (of 4), column 0 at 4 px per patch
    tokens = patch_token_masks([mask], grid=4)
    assert tokens.shape == (1, 17) and tokens[0].nonzero().flatten().tolist() == [1 + 2 * 4 + 0]


def _model_and_sae():
    backbone = tiny_backbone(seed=1, image_size=32, patch_size=8)
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=backbone.d_model, d_sae=64, architecture="topk", k=8,
                                      site="blocks.1.resid_post"))
    pixels = torch.randn(6, 3, 32, 32)
    return backbone, SAEDictionary(sae), pixels


def test_k0_reproduces_zero_shot_exactly() -> None:
    backbone, sae, pixels = _model_and_sae()
    site = "blocks.1.resid_post"
    hidden = backbone.capture(pixels, [site])[site]
    identity = suppression_fn(sae, [], "all")
    resumed = embed(backbone, site, hidden, identity)
    plain = backbone.encode_image(pixels)
    assert torch.equal(resumed, plain)
    head = PromptClassifier(backbone, [("cat",), ("dog",), ("bird",)], ("a photo of the {}",))
    assert np.array_equal(head.predict(resumed), head.predict(plain))


def test_resumed_measurement_equals_a_forward_inside_suppressed() -> None:
    backbone, sae, pixels = _model_and_sae()
    site = "blocks.1.resid_post"
    hidden = backbone.capture(pixels, [site])[site]
    features = [3, 10, 17]
    for tokens in ("all", "patches", "cls"):
        with suppressed(backbone, sae, site, features, tokens):
            inside = backbone.encode_image(pixels)
        resumed = embed(backbone, site, hidden, suppression_fn(sae, features, tokens))
        torch.testing.assert_close(resumed, inside, rtol=0, atol=1e-5)
    assert not torch.allclose(inside, backbone.encode_image(pixels))  # the edit did something


def test_capture_sites_matches_single_site_captures() -> None:
    backbone = tiny_backbone(seed=1, image_size=32, patch_size=8)

    class Images:
        def __len__(self) -> int:
            return 3

        def load(self, i: int):
            from PIL import Image
            return Image.fromarray(np.full((32, 32, 3), 40 * i + 10, dtype=np.uint8))

        def fingerprint(self) -> str:
            return "x"

    both = capture_sites(backbone, Images(), [0, 1, 2], ["blocks.0.resid_post", "blocks.2.resid_post"], 2)
    one = capture_sites(backbone, Images(), [0, 1, 2], ["blocks.2.resid_post"], 3)
    assert torch.equal(both["blocks.2.resid_post"], one["blocks.2.resid_post"])
    assert both["blocks.0.resid_post"].shape == (3, 17, backbone.d_model)
