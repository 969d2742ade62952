"""`clipsteer demo`: the whole pipeline on the embedded default (toy CLIP + synthetic world), in minutes.

One middle layer of the shipped toy CLIP: harvest its activations on world images, train a ReLU SAE,
evaluate it (reconstruction, CE recovered, factor recovery against ground truth), and measure the
steerability of its features against neurons and a random-weights control. The run directory holds
every artefact; rerunning resumes. `clipsteer layer-sweep` is the same at every layer, at full size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from clipsteer.sae.config import Architecture
from clipsteer.world.paths import shipped_toy_clip


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("runs/demo")
    """Run directory for everything the demo writes."""
    model: str | None = None
    """A CLIP checkpoint folder; default: the toy CLIP shipped with clipsteer."""
    layer: int | None = None
    """Layer to study (resid_post); default: the middle one."""
    harvest_images: int = 4000
    architecture: Architecture = "topk"
    """TopK converges in few steps on the toy CLIP; `relu` is the paper's vanilla SAE (needs more tokens)."""
    k: int = 32
    train_tokens: int = 2_000_000
    lr: float = 1e-3
    eval_images: int = 1000
    steer_images: int = 64
    steer_max_features: int = 256
    seed: int = 0


def run_demo(config: DemoConfig) -> dict:
    from clipsteer.experiments.layer_sweep import LayerSweepConfig, layer_sweep
    from clipsteer.models.backbone import Backbone

    model = str(config.model or shipped_toy_clip())
    backbone = Backbone.from_pretrained(model)
    layer = backbone.n_layers // 2 if config.layer is None else config.layer
    print(f"[demo] {backbone.name}: {backbone.n_layers} blocks, d_model {backbone.d_model}, "
          f"{backbone.grid}x{backbone.grid} patches; studying blocks.{layer}.resid_post")
    rows = layer_sweep(LayerSweepConfig(out=config.out, model=model, layers=(layer,),
                                        harvest_images=config.harvest_images, architecture=config.architecture,
                                        k=config.k, train_tokens=config.train_tokens, lr=config.lr,
                                        dead_feature_window=200,
                                        eval_images=config.eval_images, steer_images=config.steer_images,
                                        steer_max_features=config.steer_max_features, seed=config.seed))
    row = rows[0]
    print("[demo] summary: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    print(f"[demo] artefacts in {config.out}/ (layers.csv, layers.png, layer{layer}/…)")
    return row
