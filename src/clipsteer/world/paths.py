"""Where the shipped toy-CLIP checkpoint lives (kept import-light: no torch/transformers here)."""

from pathlib import Path

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "toy_clip"
