"""`clipsteer layer-sweep`: the whole pipeline at every layer — harvest, train, evaluate, steer.

Per layer of the vision tower (resid_post): one activation store (all layers harvested in one pass),
one SAE, its evaluation (`EvalResult`) and its steerability (`SteerabilitySummary`: SAE features beside
the random-direction null and neurons in raw and layer-normed units, with the concept match against its
shuffled baseline and, with `--steer.alpha-sweep`, the fraction steerable at other α). A table (`layers.json` = `LayerSweepResult`, `layers.csv`) and a
plot (`layers.png`) compare layers. Every step counts as done only when its typed result reads back, so
rerunning the same command continues an interrupted sweep.

The component configs nest unchanged (`--harvest.max-images`, `--train.trainer.lr`, `--eval.n-images`,
`--steer.n-images`): every flag means what it means in `clipsteer harvest/train/eval/steerability`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from clipsteer.activations.harvest import harvest
from clipsteer.atomic import atomic_write_text
from clipsteer.composite import own
from clipsteer.evaluate.commands import evaluate_sae
from clipsteer.evaluate.configs import EvalConfig
from clipsteer.evaluate.results import EvalResult, FactorSummary
from clipsteer.experiments.configs import LayerSweepConfig
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.results import ResultFile
from clipsteer.sae.commands import train
from clipsteer.sae.configs import TrainConfig
from clipsteer.steer.commands import steerability
from clipsteer.steer.configs import SteerabilityConfig
from clipsteer.steer.results import SteerabilitySummary

COMMAND = "layer-sweep"



@dataclass(frozen=True)
class LayerRow:
    """One layer's headline numbers, built only from the typed results of its steps."""

    layer: int
    site: str
    sae: str
    explained_variance: float
    l0_patches: float | None
    l0_cls: float | None
    l0_patches_fraction: float | None
    dead_fraction: float
    ce_recovered_pct: float | None
    factor_auroc_image: float | None
    """Mean best-feature AUROC over factor groups (None without ground-truth factors)."""
    factor_auroc_image_control: float | None
    factor_auroc_patch: float | None
    factor_auroc_patch_control: float | None
    steer_alpha: float | None = None
    """The clamp α used for steering (absolute) ..."""
    steer_alpha_relative: float | None = None
    """... as a multiple of the layer-normed token norm (the paper: 5.42)."""
    steer_temperature: float | None = None
    steer_vocabulary_size: int | None = None
    steerable: dict[str, float] = field(default_factory=dict)
    """basis → fraction steerable at the run's α."""
    n_steerable: dict[str, int] = field(default_factory=dict)
    distinct_concepts: dict[str, int] = field(default_factory=dict)
    concept_match: dict[str, float] = field(default_factory=dict)
    """basis → fraction of its steerable units whose top concept names a factor they detect ..."""
    concept_match_shuffled: dict[str, float] = field(default_factory=dict)
    """... and the same with the top concepts shuffled among them (the baseline)."""
    alpha_sweep: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, layer: int, sae: Path, result: EvalResult, summary: SteerabilitySummary | None) -> LayerRow:
        r, f = result.reconstruction, result.factor_recovery

        def mean(by_group: dict[str, float] | None) -> float | None:
            return FactorSummary.mean(by_group) if by_group else None

        steering: dict = {}
        if summary is not None:
            bases = summary.bases
            matched = {b: s.concept_match for b, s in bases.items() if s.concept_match is not None}
            steering = dict(
                steer_alpha=summary.alpha, steer_alpha_relative=summary.alpha_relative,
                steer_temperature=summary.temperature, steer_vocabulary_size=summary.vocabulary_size,
                steerable={b: s.fraction_steerable for b, s in bases.items()},
                n_steerable={b: s.n_steerable for b, s in bases.items()},
                distinct_concepts={b: s.distinct_concepts for b, s in bases.items()},
                concept_match={b: m.rate for b, m in matched.items()},
                concept_match_shuffled={b: m.shuffled_rate for b, m in matched.items()},
                alpha_sweep=summary.alpha_sweep)
        return cls(
            layer=layer, site=result.site, sae=str(sae), explained_variance=r.explained_variance,
            l0_patches=r.l0_patches, l0_cls=r.l0_cls, l0_patches_fraction=r.l0_patches_fraction,
            dead_fraction=r.dead_fraction,
            ce_recovered_pct=result.downstream.ce_recovered_pct if result.downstream else None,
            factor_auroc_image=mean(f and f.image_auroc), factor_auroc_image_control=mean(f and f.control_image_auroc),
            factor_auroc_patch=mean(f and f.patch_auroc), factor_auroc_patch_control=mean(f and f.control_patch_auroc),
            **steering)

    def flat(self) -> dict[str, object]:
        """One CSV row: scalar fields, then per basis steerable_<b>, n_steerable_<b>, concept_match_<b>,
        concept_match_shuffled_<b> and steerable_<b>_alpha<α> columns."""
        out: dict[str, object] = {k: v for k, v in vars(self).items() if not isinstance(v, dict)}
        for name in ("steerable", "n_steerable", "concept_match", "concept_match_shuffled"):
            out |= {f"{name}_{b}": v for b, v in getattr(self, name).items()}
        out |= {f"steerable_{b}_alpha{a}": v for b, sweep in self.alpha_sweep.items() for a, v in sweep.items()}
        return out


@dataclass(frozen=True)
class LayerSweepResult(ResultFile):
    FILE: ClassVar[str] = "layers.json"
    rows: tuple[LayerRow, ...]


@dataclass(frozen=True)
class LayerPlan:
    """The component configs of one layer, with the fields the sweep owns filled in."""

    layer: int
    site: str
    train: TrainConfig
    eval: EvalConfig
    steer: SteerabilityConfig

    @classmethod
    def of(cls, config: LayerSweepConfig, model: str, layer: int, site: str, out: Path) -> LayerPlan:
        run_dir = out / f"layer{layer}"
        placeholder = run_dir / "train" / "saes"  # the trained SAE's folder replaces it once known
        return cls(
            layer, site,
            train=own(config.train, COMMAND, "train", store=out / "activations" / site, out=run_dir / "train",
                      **{"trainer.device": config.device, "trainer.seed": config.seed}),
            # Evaluations sit beside the SAE, not inside it: a resumed training rewrites the SAE folder.
            eval=own(config.eval, COMMAND, "eval", sae=placeholder, out=run_dir / "eval", model=model,
                     device=config.device),
            steer=own(config.steer, COMMAND, "steer", out=run_dir / "steerability", sae=placeholder, model=model,
                      device=config.device, seed=config.seed))


def layer_sweep(config: LayerSweepConfig) -> LayerSweepResult:
    model = resolve_model(config.model)
    n_layers = Backbone.from_pretrained(model, device=config.device).n_layers
    layers = config.layers or tuple(range(n_layers))
    out = Path(config.out)
    sites = tuple(f"blocks.{layer}.resid_post" for layer in layers)
    harvest_config = own(config.harvest, COMMAND, "harvest", sites=sites, out=out / "activations", model=model,
                         device=config.device)
    plans = [LayerPlan.of(config, model, layer, site, out) for layer, site in zip(layers, sites, strict=True)]
    harvest(harvest_config)  # every flag is checked (in the plans) before the first step starts
    rows = []
    for plan in plans:
        layer = plan.layer
        saes = train(plan.train)
        if len(saes) != 1:
            raise ValueError(f"{COMMAND}: one SAE per layer; drop --train.sweep-k / --train.sweep-sparsity")
        sae_dir = next(iter(saes.values()))
        eval_dir = plan.eval.out
        result = EvalResult.read(eval_dir) if EvalResult.done(eval_dir) else evaluate_sae(replace(plan.eval, sae=sae_dir))
        summary = None
        if config.run_steerability:
            steer_dir = plan.steer.out
            summary = (SteerabilitySummary.read(steer_dir) if SteerabilitySummary.done(steer_dir)
                       else steerability(replace(plan.steer, sae=sae_dir)))
        row = LayerRow.of(layer, sae_dir, result, summary)
        rows.append(row)
        print(f"[{COMMAND}] layer {layer}: " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.flat().items()))
    sweep = LayerSweepResult(tuple(rows))
    write_table(sweep, out)
    plot_layers(sweep, out / "layers.png")
    sweep.write(out)
    return sweep


def write_table(sweep: LayerSweepResult, out: Path) -> None:
    flat = [row.flat() for row in sweep.rows]
    fields = list(dict.fromkeys(k for row in flat for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(out / "layers.csv", text.getvalue())


def plot_layers(sweep: LayerSweepResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep.rows
    layers = [r.layer for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    names = {"sae": "SAE features", "null": "random directions (null)", "neurons": "neurons (raw)",
             "neurons_ln": "neurons (LN units)", "random_vision_sae": "SAE, random vision (diagnostic)",
             "random_vision_neurons": "neurons, random vision (diagnostic)"}
    colours = dict(zip(names, ("tab:blue", "tab:grey", "tab:orange", "tab:red", "tab:green", "tab:olive"),
                       strict=True))
    styles = ["--", ":", "-."]
    for basis in rows[0].steerable:  # colour = basis; solid = the run's α, dashed/dotted = the α sweep
        if all(basis in r.steerable for r in rows):
            left.plot(layers, [r.steerable[basis] for r in rows], marker="o", markersize=3,
                      label=names.get(basis, basis), color=colours.get(basis))
        alphas = sorted(rows[0].alpha_sweep.get(basis, {}), key=float)
        for i, alpha in enumerate(alphas):
            if all(alpha in r.alpha_sweep.get(basis, {}) for r in rows):
                left.plot(layers, [r.alpha_sweep[basis][alpha] for r in rows], marker="o", markersize=3,
                          linestyle=styles[i % len(styles)], label=f"{names.get(basis, basis)}, α={alpha}",
                          color=colours.get(basis))
    left.set_xlabel("layer (resid_post)")
    left.set_ylabel("fraction steerable (S > 0.10)")
    if rows[0].steerable:
        left.legend(fontsize=7)
    for key, label in [("factor_auroc_image", "SAE, image level"), ("factor_auroc_patch", "SAE, patch level"),
                       ("factor_auroc_image_control", "untrained SAE, image level"),
                       ("factor_auroc_patch_control", "untrained SAE, patch level")]:
        if all(getattr(r, key) is not None for r in rows):
            right.plot(layers, [getattr(r, key) for r in rows], marker="o", label=label)
    right.set_xlabel("layer (resid_post)")
    right.set_ylabel("mean best-feature AUROC")
    if right.lines:
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
