import pytest
import torch

from clipsteer.evaluate.auroc import auroc
from clipsteer.evaluate.downstream import downstream_fidelity
from clipsteer.evaluate.factors import factor_recovery, image_level
from clipsteer.evaluate.reconstruction import ReconstructionMeter, density_histogram
from clipsteer.models.testing import TINY_WORDS, tiny_backbone


def brute_force_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def test_auroc_matches_pairwise_definition_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (150, 9), generator=g).float()
    labels = torch.rand(150, generator=g) > 0.7
    got = auroc(scores, labels, chunk=4)
    expected = torch.tensor([brute_force_auroc(scores[:, j], labels) for j in range(9)])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="needs both classes"):
        auroc(scores, torch.zeros(150, dtype=torch.bool))
    several = torch.stack([labels, ~labels, torch.rand(150, generator=g) > 0.2], dim=1)
    torch.testing.assert_close(auroc(scores, several, chunk=5),
                               torch.stack([auroc(scores, several[:, i]) for i in range(3)]))


def test_factor_recovery_splitting_and_polysemanticity() -> None:
    g = torch.Generator().manual_seed(0)
    n = 400
    a, b = torch.rand(n, generator=g) > 0.5, torch.rand(n, generator=g) > 0.5
    acts = torch.rand(n, 6, generator=g) * 0.1  # noise features
    acts[:, 0] += a.float()                    # a perfect detector of A
    acts[:, 1] += a.float() * 0.9              # a second one: A is split over two features
    acts[:, 2] += a.float() + b.float()        # fires for A and for B: detects both (AUROC ≈ 0.875 each)
    acts[:, 3] += b.float()                    # a perfect detector of B
    rec = factor_recovery(acts, {"A": a, "B": b, "never": torch.zeros(n, dtype=torch.bool)})
    by_name = {s.factor: s for s in rec.scores}
    assert set(by_name) == {"A", "B"}  # a factor without positives is skipped
    assert by_name["A"].auroc == pytest.approx(1.0) and by_name["A"].best_feature in (0, 1)
    assert by_name["A"].n_detectors == 2 and by_name["B"].n_detectors == 1
    assert rec.poly_counts[2] == 2 and rec.poly_counts[4] == 0
    assert rec.summary()["polysemantic_features"] == 1
    # Every noise feature fires everywhere (F1 = 2p/(1+p)); thresholded detectors would do better, but
    # "fires" means > 0 here, so the best firing F1 of A is that of an always-on feature.
    prevalence = a.double().mean()
    assert by_name["A"].best_f1 == pytest.approx(float(2 * prevalence / (1 + prevalence)), abs=1e-4)
    assert rec.mean_auroc == pytest.approx(1.0)


def test_firing_f1_rewards_features_that_fire_exactly_on_the_factor() -> None:
    from clipsteer.evaluate.factors import firing_f1

    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
    acts = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 1.0, 0.0]])
    f1 = firing_f1(acts, labels)
    torch.testing.assert_close(f1[0], torch.tensor([1.0, 2 * 2 / 6, 0.0]))
    torch.testing.assert_close(f1[1], torch.tensor([0.0, 2 * 1 / 5, 1.0]))


def test_image_level_is_max_over_tokens() -> None:
    acts = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    assert image_level(acts).tolist() == [[2.0, 1.0]]


def test_reconstruction_meter_hand_case() -> None:
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # one image: CLS + 2 patches
    x_hat = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]])
    codes = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]])
    meter = ReconstructionMeter(d_sae=3)
    meter.update(x, x_hat, codes)
    r = meter.result()
    mu = x[0].mean(0)
    total_var = float((x[0] - mu).pow(2).sum())
    assert r["explained_variance"] == pytest.approx(1 - 1.0 / total_var)
    assert r["nmse"] == pytest.approx(1.0 / 4.0)
    assert r["l0_cls"] == 1.0 and r["l0_patches"] == pytest.approx(1.0)
    assert r["dead_fraction"] == pytest.approx(1 / 3)
    assert r["dense_fraction"] == pytest.approx(2 / 3)
    hist = density_histogram(meter.frequencies(), bins=4)
    assert hist["dead"] == 1 and sum(hist["counts"]) == 2


def test_downstream_identity_recovers_everything_and_zero_recovers_nothing() -> None:
    backbone = tiny_backbone(seed=0)
    pixels = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    classes = tuple(TINY_WORDS[4:8])
    head = backbone.zero_shot_head(list(classes), ["a photo of a {}"])
    labels = backbone.zero_shot_logits(backbone.encode_image(pixels), head).argmax(-1)  # clean is best
    ident = downstream_fidelity(backbone, "blocks.1.resid_post", lambda h: h, pixels, head, classes, labels)
    assert ident.ce_recovered_pct == pytest.approx(100.0) and ident.accuracy_clean == 1.0
    assert ident.embedding_cosine == pytest.approx(1.0) and ident.agreement == 1.0
    assert ident.kl_zero_shot == pytest.approx(0.0, abs=1e-6)
    zero = downstream_fidelity(backbone, "blocks.1.resid_post", torch.zeros_like, pixels, head, classes, labels)
    assert zero.ce_recovered_pct == pytest.approx(0.0) and zero.kl_zero_shot > 0
    # Without labels: the label-free measures only.
    unlabelled = downstream_fidelity(backbone, "blocks.1.resid_post", torch.zeros_like, pixels, head, classes)
    assert unlabelled.ce_recovered_pct is None and unlabelled.kl_zero_shot == pytest.approx(zero.kl_zero_shot)
