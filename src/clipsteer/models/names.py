"""Model names as commands take them, and the one default (kept import-light: no torch here).

A model is named by
- `clipsteer:<name>`   a checkpoint shipped inside the package (`clipsteer:toy_clip`, the default),
- a local folder       a Hugging Face CLIP folder (or an open_clip folder, where supported),
- `org/name`           a Hugging Face Hub id, read from the local cache when offline.
Names, not absolute install paths, are what stores and saved configs record, so runs stay valid when
the package or the run folder moves; a model's identity is its content fingerprint (`revision`).
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_PREFIX = "clipsteer:"
TOY_CLIP = "clipsteer:toy_clip"
"""The default model of every command: the toy CLIP trained on the synthetic world, shipped in the package."""
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def resolve_model(model: str | Path | None) -> str:
    """The model a command runs on: `model` as given, or the shipped toy CLIP when None/empty."""
    return str(model) if model else TOY_CLIP


def builtin_dir(name: str) -> Path:
    """The folder of a shipped checkpoint `clipsteer:<name>`; a clear error when it is not there."""
    assert name.startswith(BUILTIN_PREFIX), name
    folder = ASSETS / name[len(BUILTIN_PREFIX):]
    if not (folder / "config.json").is_file():
        shipped = sorted(BUILTIN_PREFIX + p.name for p in ASSETS.iterdir() if (p / "config.json").is_file()) \
            if ASSETS.is_dir() else []
        raise FileNotFoundError(f"model {name!r}: no checkpoint shipped at {folder}; shipped: {shipped}. "
                                "Reinstall clipsteer, or train a toy CLIP with the `world train-clip` command.")
    return folder
