import torch

from clipsteer.steer.concept_match import concept_match, detected_factors


def test_detected_factors_by_image_level_auroc() -> None:
    labels = {"colour:red": torch.tensor([1, 1, 0, 0, 0, 0]).bool(), "shape:star": torch.tensor([0, 0, 1, 1, 1, 0]).bool()}
    codes = torch.tensor([[5.0, 0.0], [4.0, 0.1], [0.0, 3.0], [0.1, 2.0], [0.0, 2.5], [0.2, 0.0]])
    detected = detected_factors(codes, labels, threshold=0.9)
    assert [set(d) for d in detected] == [{"colour:red"}, {"shape:star"}]
    assert detected[0]["colour:red"] == 1.0  # red images hold the unit's 2 largest codes


def test_concept_match_and_its_shuffled_baseline() -> None:
    factors = (frozenset({"colour:red"}), frozenset({"shape:star"}), frozenset({"colour:red", "shape:star"}))
    detected = [frozenset({"colour:red"}), frozenset({"shape:star"}), frozenset()]
    # unit 0 → "red" (match), unit 1 → "star" (match), unit 2 detects nothing (no match)
    match = concept_match([0, 1, 2], detected, factors, n_shuffles=2000, seed=0)
    assert (match.n_units, match.n_matched) == (3, 2)
    assert match.rate == 2 / 3
    # Under a uniform permutation of (0, 1, 2): unit 0 matches when it gets 0 or 2, unit 1 when it gets 1 or 2,
    # unit 2 never: expected hits = 2/3 + 2/3 → rate 4/9.
    assert abs(match.shuffled_rate - 4 / 9) < 0.02
    assert concept_match([], [], factors).rate == 0.0
