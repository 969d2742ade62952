"""The suppression skeleton: the selection statistic on a case with a known answer, k = 0 is zero-shot
exactly, and the resumed-forward measurement equals a plain forward inside `suppressed`."""

from __future__ import annotations

import numpy as np
import torch

from clipsteer.evaluate.zero_shot import ZeroShotClassifier
from clipsteer.experiments.debias import rank_spurious
from clipsteer.experiments.suppression import (
    Candidate,
    capture_sites,
    choose,
    embed,
    image_scores,
    paired_standard_error,
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
    ranking = rank_spurious(DirectionSet.neurons(4), hidden, label, spurious, "patches", max_target_information=0.1)
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
    head = ZeroShotClassifier(backbone, ("cat", "dog", "bird"), ("a photo of the {}",))
    assert np.array_equal(head.predict_embeddings(resumed), head.predict_embeddings(plain))


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


def test_paired_standard_error_of_the_guard_drop() -> None:
    base = np.array([True] * 100)
    worse = base.copy()
    worse[:4] = False  # 4 of 100 images lost: drop 0.04; d = −1 on 4 images, 0 elsewhere
    expected = np.sqrt(np.var(np.r_[-np.ones(4), np.zeros(96)], ddof=1) / 100)
    assert paired_standard_error(worse, base) == expected
    assert paired_standard_error(base, base) == 0.0
    lost_three = np.r_[np.zeros(3, bool), np.ones(97, bool)]
    assert paired_standard_error(lost_three, lost_three) == 0.0  # the same images right and wrong: no doubt
    # the same accuracy with other images wrong: no drop, but an uncertain one
    assert paired_standard_error(lost_three, np.r_[np.ones(3, bool), np.zeros(3, bool), np.ones(94, bool)]) > 0


def test_choice_keeps_the_guard_by_its_standard_error() -> None:
    zero = Candidate(0, "all", 0.30, 0.97)
    near_bound = Candidate(256, "all", 0.75, 0.951, guard_se=0.005)  # drop 0.019: inside only as a point
    safe = Candidate(128, "all", 0.68, 0.961, guard_se=0.004)  # drop 0.009
    over = Candidate(512, "all", 0.80, 0.94)  # drop 0.03
    candidates = [zero, safe, near_bound, over]
    assert choose(candidates, 0.02) == near_bound
    assert choose(candidates, 0.02, standard_errors=1.0) == safe
    assert choose(candidates, 0.005, standard_errors=1.0) == zero  # nothing qualifies: the unedited model
    # a drop exactly at the bound qualifies despite float rounding (0.97 − 0.95 > 0.02 in floats)
    assert choose([zero, Candidate(4, "all", 0.5, 0.95)], 0.02).k == 4
