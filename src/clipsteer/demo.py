"""`clipsteer demo`: everything clipsteer does, on the embedded default (toy CLIP + synthetic world), offline.

Steps, each reused on a rerun once its typed result reads back:
1. `toy_clip.json`: the toy CLIP's own zero-shot, spurious-correlation and typographic numbers
   (`clipsteer world evaluate`).
2. The layer sweep at the demo's layers (default: the middle one): harvest, a TopK SAE, its evaluation
   and its steerability against the random-direction null and neurons (`layerN/…`).
3. The paper's vanilla SAE (ReLU + L1) on the same store, evaluated beside it (`layerN/relu/…`).
4. Debiasing on both world group tasks (`debias_background/`, `debias_attribute/`) and the typographic
   defense (`typographic/`) with the TopK SAEs.
5. The HTML report (`report/index.html`) and `summary.json`, the headline numbers (`DemoSummary`).

`DemoConfig` is a `LayerSweepConfig` with the demo's sizes, plus the component configs of steps 3–5;
every flag means what it means in the component command (`--train.trainer.lr`, `--debias.max-images`).
`--fast` shrinks the default sizes for a run of a few minutes (flags you set yourself are kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from clipsteer.composite import own, replace_nested
from clipsteer.evaluate.commands import evaluate_sae
from clipsteer.evaluate.results import EvalResult, FactorSummary
from clipsteer.experiments.configs import DemoConfig
from clipsteer.experiments.debias import debias
from clipsteer.experiments.layer_sweep import LayerSweepResult, layer_sweep
from clipsteer.experiments.suppression import SuppressionResult, metric
from clipsteer.experiments.typographic import typographic_defense
from clipsteer.models.names import resolve_model
from clipsteer.results import ResultFile
from clipsteer.sae.commands import train
from clipsteer.steer.results import SteerabilitySummary

COMMAND = "demo"
GROUP_TASKS = ("background", "attribute")



# The sizes `--fast` uses where the user kept the defaults: (dotted field, value).
FAST_SIZES: tuple[tuple[str, Any], ...] = (
    ("harvest.max_images", 1000), ("train.trainer.total_tokens", 600_000), ("relu.trainer.total_tokens", 300_000),
    ("eval.n_images", 300), ("eval.n_patch_images", 100), ("eval.n_downstream_images", 300),
    ("steer.n_images", 16), ("steer.max_features", 64), ("debias.max_images", 240),
    ("debias.selection.n_features", (2, 8, 32)), ("debias.random_draws", 1),
    ("typographic.max_images", 150), ("typographic.selection.n_features", (2, 8, 32)),
    ("typographic.random_draws", 1), ("world_images", 200),
)


def fast_sizes(config: DemoConfig) -> DemoConfig:
    """`config` with FAST_SIZES wherever it still holds the full demo's value."""
    default = DemoConfig()

    def value_at(holder: Any, dotted: str) -> Any:
        for name in dotted.split("."):
            holder = getattr(holder, name)
        return holder

    return replace_nested(config, {dotted: value for dotted, value in FAST_SIZES
                                   if value_at(config, dotted) == value_at(default, dotted)})


# ----------------------------------------------------------------- summary.json
@dataclass(frozen=True)
class SAENumbers:
    explained_variance: float
    l0_patch: float | None
    l0_cls: float | None
    dead_fraction: float
    ce_recovered: float | None
    """Percent of the zero-ablation CE loss gap the SAE recovers on the zero-shot task."""
    factor_auroc: float | None
    """Mean best-feature AUROC over the world's factor groups, image level."""

    @classmethod
    def of(cls, result: EvalResult) -> SAENumbers:
        r, f = result.reconstruction, result.factor_recovery
        return cls(r.explained_variance, r.l0_patches, r.l0_cls, r.dead_fraction,
                   result.downstream.ce_recovered_pct if result.downstream else None,
                   FactorSummary.mean(f.image_auroc) if f and f.image_auroc else None)


@dataclass(frozen=True)
class SteerNumbers:
    sae_fraction: float
    null_fraction: float | None
    neuron_fraction: float | None
    concept_match: float | None
    concept_match_shuffled: float | None
    alpha: float
    temperature: float
    vocabulary_size: int

    @classmethod
    def of(cls, summary: SteerabilitySummary) -> SteerNumbers:
        bases = summary.bases

        def fraction(name: str) -> float | None:
            return bases[name].fraction_steerable if name in bases else None

        match = bases["sae"].concept_match
        return cls(bases["sae"].fraction_steerable, fraction("null"), fraction("neurons"),
                   match.rate if match else None, match.shuffled_rate if match else None,
                   summary.alpha, summary.temperature, summary.vocabulary_size)


@dataclass(frozen=True)
class BeforeAfter:
    before: float
    after: float


@dataclass(frozen=True)
class DebiasNumbers:
    zero_shot_wga: float
    zero_shot_avg: float
    """Accuracy over all report-split images (the demo's "avg" is this, not the group mean)."""
    best_layer: str
    wga: float
    avg: float
    controls: dict[str, dict[str, float]]
    """Each control at the best layer (random, neurons) and each reference (orth_proj): its wga and avg."""

    @classmethod
    def of(cls, result: SuppressionResult) -> DebiasNumbers:
        base, best = result.baseline.report, result.best
        others = {n: m for n, m in best.methods.items() if n != "sae"} | result.references
        return cls(metric(base, "wga"), metric(base, "accuracy"), result.best_site,
                   metric(best.methods["sae"].report, "wga"), metric(best.methods["sae"].report, "accuracy"),
                   {n: {"wga": metric(m.report, "wga"), "avg": metric(m.report, "accuracy")} for n, m in others.items()})


@dataclass(frozen=True)
class TypographicNumbers:
    best_layer: str
    attacked_accuracy: BeforeAfter
    clean_accuracy: BeforeAfter
    text_capture_rate: BeforeAfter
    controls: dict[str, dict[str, float]]
    """Each control at the best layer (random, neurons): its attacked, clean and text-capture rates."""

    @classmethod
    def of(cls, result: SuppressionResult) -> TypographicNumbers:
        base, sae = result.baseline.report, result.best.methods["sae"].report
        names = ("attacked_accuracy", "clean_accuracy", "text_capture_rate")
        pairs = {n: BeforeAfter(metric(base, n), metric(sae, n)) for n in names}
        controls = {n: {k: metric(m.report, k) for k in names} for n, m in result.best.methods.items() if n != "sae"}
        return cls(result.best_site, controls=controls, **pairs)


@dataclass(frozen=True)
class DemoSummary(ResultFile):
    """`summary.json`: the demo's headline numbers, keyed by layer (`"2"`) where they are per layer."""

    FILE: ClassVar[str] = "summary.json"
    toy_clip: dict
    """`clipsteer world evaluate`'s object: the toy CLIP's zero-shot, group and typographic numbers."""
    sae: dict[str, dict[str, SAENumbers]]
    """layer → SAE (`topk`: the one every step uses; `relu`: the paper's recipe) → its quality."""
    steerability: dict[str, SteerNumbers]
    debias: dict[str, DebiasNumbers]
    """World group task (background, attribute) → its numbers on the report split."""
    typographic: TypographicNumbers
    seconds: dict[str, float]
    """Wall time of each step in the run that computed it (0 when reused)."""


# ----------------------------------------------------------------- the run
def run_demo(config: DemoConfig) -> DemoSummary:
    from clipsteer.models.backbone import Backbone
    from clipsteer.report.commands import ReportConfig, report

    config = fast_sizes(config) if config.fast else config
    out, model = Path(config.out), resolve_model(config.model)
    n_layers = Backbone.from_pretrained(model, device=config.device).n_layers
    layers = config.layers or (n_layers // 2,)
    print(f"[demo] {model}: studying " + ", ".join(f"blocks.{n}.resid_post" for n in layers) + f" → {out}/")
    seconds: dict[str, float] = {}

    def step(name: str, fn: Any, *args: Any) -> Any:
        print(f"[demo] {name} …")
        start = time.perf_counter()
        value = fn(*args)
        seconds[name] = round(time.perf_counter() - start, 2)
        return value

    toy_clip = step("toy CLIP numbers", _toy_clip_numbers, out, model, config.world_images)
    sweep: LayerSweepResult = step("harvest, TopK SAE, eval, steerability", layer_sweep,
                                   replace(config, layers=layers, out=out))
    relu = {row.layer: step(f"paper ReLU SAE, layer {row.layer}", _relu_sae, config, model, out, row.layer)
            for row in sweep.rows}
    saes = tuple(Path(row.sae) for row in sweep.rows)
    debiased = {task: step(f"debias {task}", debias, own(config.debias, COMMAND, "debias", saes=saes,
                                                         dataset=f"world:{task}", out=out / f"debias_{task}",
                                                         model=model, device=config.device, seed=config.seed))
                for task in GROUP_TASKS}
    typographic = step("typographic defense", typographic_defense,
                       own(config.typographic, COMMAND, "typographic", saes=saes, out=out / "typographic",
                           model=model, device=config.device, seed=config.seed))
    step("report", report, ReportConfig(run=out, model=model, device=config.device))
    summary = DemoSummary(
        toy_clip=toy_clip,
        sae={str(row.layer): {"topk": SAENumbers.of(EvalResult.read(out / f"layer{row.layer}" / "eval")),
                              "relu": SAENumbers.of(relu[row.layer])} for row in sweep.rows},
        steerability={str(row.layer): SteerNumbers.of(SteerabilitySummary.read(out / f"layer{row.layer}" / "steerability"))
                      for row in sweep.rows} if config.run_steerability else {},
        debias={task: DebiasNumbers.of(result) for task, result in debiased.items()},
        typographic=TypographicNumbers.of(typographic), seconds=seconds)
    summary.write(out)
    print(describe(summary))
    print(f"[demo] report: {out / 'report' / 'index.html'}; numbers: {out / DemoSummary.FILE}")
    return summary


def _toy_clip_numbers(out: Path, model: str, n_images: int) -> dict:
    """The world-evaluate object, computed once per demo folder (`toy_clip.json`)."""
    import json

    from clipsteer.atomic import atomic_write_json
    from clipsteer.world.configs import WorldEvalConfig
    from clipsteer.world.evaluate import evaluate_checkpoint

    path = out / "toy_clip.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    result = evaluate_checkpoint(WorldEvalConfig(checkpoint=model, n_zero_shot=n_images, n_group=n_images,
                                                 n_typographic=n_images // 2))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    return result


def _relu_sae(config: DemoConfig, model: str, out: Path, layer: int) -> EvalResult:
    """Train (or reuse) the paper's ReLU SAE on the layer's store and evaluate it beside the TopK one."""
    site = f"blocks.{layer}.resid_post"
    folder = out / f"layer{layer}" / "relu"
    train_config = own(config.relu, COMMAND, "relu", store=out / "activations" / site, out=folder / "train",
                       **{"trainer.device": config.device, "trainer.seed": config.seed})
    sae_dir = next(iter(train(train_config).values()))
    if EvalResult.done(folder / "eval"):
        return EvalResult.read(folder / "eval")
    eval_config = own(config.eval, COMMAND, "eval", sae=sae_dir, out=folder / "eval", model=model,
                      device=config.device)
    return evaluate_sae(eval_config)


def describe(summary: DemoSummary) -> str:
    lines = ["[demo] summary"]
    z = summary.toy_clip
    if "zero_shot_accuracy" in z:
        lines.append(f"  toy CLIP zero-shot accuracy {z['zero_shot_accuracy']:.3f}")
    for layer, saes in summary.sae.items():
        for name, s in saes.items():
            lines.append(f"  layer {layer} {name}: EV {s.explained_variance:.3f}, L0 patch {s.l0_patch}, "
                         f"L0 CLS {s.l0_cls}, dead {s.dead_fraction:.3f}, CE recovered {s.ce_recovered}")
    for layer, s in summary.steerability.items():
        lines.append(f"  layer {layer} steerable: SAE {s.sae_fraction:.3f}, null {s.null_fraction}, neurons "
                     f"{s.neuron_fraction} (α {s.alpha:.1f}, τ {s.temperature:.1f}, |V| {s.vocabulary_size}); "
                     f"concept match {s.concept_match} vs shuffled {s.concept_match_shuffled}")
    for task, d in summary.debias.items():
        lines.append(f"  debias {task}: WGA {d.zero_shot_wga:.3f} → {d.wga:.3f} (avg {d.zero_shot_avg:.3f} → "
                     f"{d.avg:.3f}) at {d.best_layer}; controls " +
                     ", ".join(f"{n} {c['wga']:.3f}" for n, c in d.controls.items()))
    t = summary.typographic
    lines.append(f"  typographic: accuracy under attack {t.attacked_accuracy.before:.3f} → {t.attacked_accuracy.after:.3f}, "
                 f"clean {t.clean_accuracy.before:.3f} → {t.clean_accuracy.after:.3f} at {t.best_layer}")
    return "\n".join(lines)
