"""`clipsteer demo --fast` end to end at test sizes: every step's files, and summary.json's numbers checked
against the typed results they come from (and the world's own evaluation), then a rerun that reuses all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsteer.cli import run_command
from clipsteer.demo import DemoSummary, fast_sizes
from clipsteer.evaluate.results import EvalResult
from clipsteer.experiments.configs import DemoConfig
from clipsteer.experiments.layer_sweep import LayerSweepResult
from clipsteer.experiments.suppression import SuppressionResult
from clipsteer.steer.results import SteerabilitySummary

SIZES = ["--harvest.max-images", "64", "--train.trainer.total-tokens", "200000",
         "--relu.trainer.total-tokens", "100000", "--eval.n-images", "48", "--eval.n-patch-images", "16",
         "--eval.n-downstream-images", "48", "--steer.n-images", "6", "--steer.max-features", "8",
         "--steer.match-n-images", "100",
         "--debias.max-images", "48", "--typographic.max-images", "24", "--world-images", "64"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    out = tmp_path_factory.mktemp("demo") / "run"
    return out, run_command(["demo", "--fast", "--out", str(out), *SIZES])


def test_the_demo_writes_every_step_and_the_report(demo: tuple[Path, DemoSummary]) -> None:
    out, summary = demo
    for name in ("summary.json", "toy_clip.json", "layers.json", "layer2/eval/eval.json",
                 "layer2/steerability/summary.json", "layer2/relu/eval/eval.json", "debias_background/result.json",
                 "debias_attribute/result.json", "typographic/result.json", "report/index.html"):
        assert (out / name).is_file(), name
    assert DemoSummary.read(out) == summary
    html = (out / "report" / "index.html").read_text()
    assert "Debiasing: debias_background" in html and "Typographic defense: typographic" in html


def test_summary_numbers_are_the_steps_numbers(demo: tuple[Path, DemoSummary]) -> None:
    out, summary = demo
    assert summary.toy_clip == json.loads((out / "toy_clip.json").read_text())
    assert 0.5 < summary.toy_clip["zero_shot_accuracy"] <= 1.0  # the toy CLIP classifies shapes
    topk, relu = summary.sae["2"]["topk"], summary.sae["2"]["relu"]
    assert topk.l0_patch == pytest.approx(32) and topk.l0_cls == pytest.approx(32)  # TopK: exactly k per token
    row = LayerSweepResult.read(out).rows[0]
    assert topk.explained_variance == row.explained_variance > 0.5
    assert relu.explained_variance == EvalResult.read(out / "layer2" / "relu" / "eval").reconstruction.explained_variance
    assert 0 <= topk.dead_fraction <= 1 and topk.factor_auroc is not None and 0.5 < topk.factor_auroc <= 1
    steer = summary.steerability["2"]
    steer_summary = SteerabilitySummary.read(out / "layer2" / "steerability")
    assert steer.sae_fraction == steer_summary.bases["sae"].fraction_steerable
    assert steer.alpha == steer_summary.alpha and steer.temperature == steer_summary.temperature
    assert steer.vocabulary_size == steer_summary.vocabulary_size > 30
    assert steer_summary.vocabulary.startswith("images:world:")  # the world's caption phrases
    assert steer.temperature == steer_summary.logit_scale  # τ = the model's own logit scale
    assert 60.5 < steer.alpha < 61.5  # 150·√(127/767): the paper's α = 150 translated to d = 128
    assert steer.null_fraction == steer_summary.bases["null"].fraction_steerable
    assert steer.neuron_fraction == steer_summary.bases["neurons"].fraction_steerable
    match = steer_summary.bases["sae"].concept_match
    assert match is not None and steer.concept_match == match.rate and steer.concept_match_shuffled == match.shuffled_rate
    for task in ("background", "attribute"):
        result = SuppressionResult.read(out / f"debias_{task}")
        numbers = summary.debias[task]
        assert numbers.zero_shot_wga == result.baseline.report.wga  # type: ignore[union-attr]
        assert numbers.wga == result.best.methods["sae"].report.wga  # type: ignore[union-attr]
        assert numbers.best_layer == "blocks.2.resid_post"
        assert set(numbers.controls) == {"random", "neurons", "orth_proj"}
        assert numbers.zero_shot_wga <= numbers.zero_shot_avg  # the worst group is never above the mean
    typographic = SuppressionResult.read(out / "typographic")
    t = summary.typographic
    assert t.attacked_accuracy.before == typographic.baseline.report.attacked_accuracy  # type: ignore[union-attr]
    assert t.clean_accuracy.after == typographic.best.methods["sae"].report.clean_accuracy  # type: ignore[union-attr]
    assert t.attacked_accuracy.before + t.text_capture_rate.before <= 1.0


def test_a_rerun_reuses_every_step(demo: tuple[Path, DemoSummary]) -> None:
    out, summary = demo
    results = ["toy_clip.json", "layer2/eval/eval.json", "layer2/relu/eval/eval.json", "debias_background/result.json",
               "typographic/result.json"]
    written = {name: (out / name).stat().st_mtime_ns for name in results}
    again = run_command(["demo", "--fast", "--out", str(out), *SIZES])
    assert again.sae == summary.sae and again.debias == summary.debias and again.typographic == summary.typographic
    assert {name: (out / name).stat().st_mtime_ns for name in results} == written  # read back, not rewritten


def test_fast_keeps_the_sizes_the_user_set() -> None:
    config = fast_sizes(DemoConfig(world_images=77))
    assert config.world_images == 77 and config.harvest.max_images == 1000 and config.debias.max_images == 240
