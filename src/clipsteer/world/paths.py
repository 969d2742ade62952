"""Where the shipped toy-CLIP checkpoint lives (kept import-light: no torch/transformers here)."""

from pathlib import Path

from clipsteer.models.names import TOY_CLIP, builtin_dir

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "toy_clip"


def shipped_toy_clip() -> Path:
    """The shipped toy CLIP folder; a clear error if it is missing."""
    return builtin_dir(TOY_CLIP)
