"""Where the shipped toy-CLIP checkpoint lives (kept import-light: no torch/transformers here)."""

from pathlib import Path

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "toy_clip"


def shipped_toy_clip() -> Path:
    """The shipped toy CLIP folder, the default model of every command; a clear error if it is missing."""
    if not (SHIPPED_CHECKPOINT / "config.json").is_file():
        raise FileNotFoundError(f"the shipped toy CLIP is missing at {SHIPPED_CHECKPOINT}; reinstall clipsteer or "
                                f"train one with `clipsteer world train-clip`")
    return SHIPPED_CHECKPOINT
