"""`clipsteer demo`: the whole pipeline on the embedded default (toy CLIP + synthetic world), in minutes.

The layer sweep at one middle layer of the shipped toy CLIP, at small sizes: harvest its activations
on world images, train a TopK SAE, evaluate it (reconstruction, CE recovered, factor recovery against
ground truth), and measure the steerability of its features beside the random-direction null and
neurons, with constants translated by meaning (α relative to the token norm, τ = the model's logit scale)
and the world's caption phrases as concepts, plus the concept match against its shuffled baseline. `DemoConfig` is a `LayerSweepConfig` with the demo's sizes as defaults, so every flag is the
layer sweep's (`--train.trainer.lr`, `--steer.n-images`, ...). The run folder holds every artefact;
rerunning reuses every finished step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from clipsteer.activations.harvest import HarvestConfig
from clipsteer.evaluate.commands import EvalConfig
from clipsteer.experiments.layer_sweep import LayerRow, LayerSweepConfig, layer_sweep
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.sae.commands import TrainConfig
from clipsteer.sae.recipe import TrainerConfig
from clipsteer.steer.commands import SteerabilityConfig


@dataclass(frozen=True)
class DemoConfig(LayerSweepConfig):
    out: Path = Path("runs/demo")
    layers: tuple[int, ...] = ()
    """Layers to study (resid_post); default: the middle one."""
    harvest: HarvestConfig = HarvestConfig(max_images=4000)
    train: TrainConfig = TrainConfig(
        architecture="topk", expansion_factor=16, k=32,
        trainer=TrainerConfig(total_tokens=2_000_000, lr=1e-3, dead_feature_window=200))
    """TopK converges in few steps on the toy CLIP; `--train.architecture relu` is the paper's vanilla SAE."""
    eval: EvalConfig = EvalConfig(n_images=1000)
    steer: SteerabilityConfig = SteerabilityConfig(n_images=64, max_features=256)


def run_demo(config: DemoConfig) -> LayerRow:
    model = resolve_model(config.model)
    backbone = Backbone.from_pretrained(model)
    layers = config.layers or (backbone.n_layers // 2,)
    print(f"[demo] {backbone.name}: {backbone.n_layers} blocks, d_model {backbone.d_model}, "
          f"{backbone.grid}x{backbone.grid} patches; studying " + ", ".join(f"blocks.{n}.resid_post" for n in layers))
    sweep = layer_sweep(replace(config, layers=layers))
    row = sweep.rows[0]
    print("[demo] summary: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in row.flat().items()))
    print(f"[demo] artefacts in {config.out}/ (layers.csv, layers.png, layer{row.layer}/…)")
    return row
