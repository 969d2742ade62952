"""`clipsteer demo`: the whole pipeline on the embedded default (toy CLIP + synthetic world).

Stages run in order and each prints what it measured; stages whose code has not landed yet are
listed as such rather than skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from clipsteer.models.backbone import Backbone


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("runs/demo")
    """Run directory for everything the demo writes."""
    model: str | None = None
    """A CLIP checkpoint folder; default: the toy CLIP shipped with clipsteer."""
    seed: int = 0


def shipped_toy_clip() -> Path:
    return Path(__file__).parent / "assets" / "toy_clip"


def run_demo(config: DemoConfig) -> dict:
    torch.manual_seed(config.seed)
    model_path = Path(config.model) if config.model else shipped_toy_clip()
    if not (model_path / "config.json").is_file():
        raise SystemExit(f"no CLIP checkpoint at {model_path}; pass --model DIR")
    backbone = Backbone.from_pretrained(model_path)
    site = f"blocks.{backbone.n_layers // 2}.resid_post"
    pixels = torch.zeros(1, 3, backbone.image_size, backbone.image_size)
    acts = backbone.capture(pixels, [site])[site]
    print(f"[model] {backbone.name}: {backbone.n_layers} blocks, d_model {backbone.d_model}, "
          f"{backbone.n_tokens} tokens; captured {site} {tuple(acts.shape)}")
    return {"site": site}
