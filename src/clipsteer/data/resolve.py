"""Turn a dataset spec string (a CLI value) and an optional split into a dataset.

Specs:
- a directory path       → `ImageFolder(path)` (no splits)
- `<prefix>:<rest>`      → a registered dataset source, e.g. `world:train` (the synthetic world) or
  `waterbirds:ROOT` with a split (labelled formats: `waterbirds`, `celeba`, `rta100`, `paint`,
  `disentangling`, `csv`; see `clipsteer.data.labelled`)

Sources register a prefix either in code (`register_dataset_source("mine", opener)`) or, for an
installed package, through the entry-point group `clipsteer.datasets` (name = prefix, value =
"module:opener"); clipsteer's own synthetic world registers `world` that way, so this generic layer
never imports it. An opener is called as `opener(rest, split)`; `split` is None when the caller did
not name one (a source whose data comes in splits then says which exist). A command that runs a model
passes its checkpoint folder (`model_dir`): a `ModelMatched` dataset then renders itself for that model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from clipsteer.data.folder import ImageFolder
from clipsteer.data.protocol import ImageDataset, ModelMatched

ENTRY_POINT_GROUP = "clipsteer.datasets"
Opener = Callable[[str, "str | None"], ImageDataset]

# Built-in labelled formats, imported by "module:function" only when used.
_BUILTIN: dict[str, str] = {
    "waterbirds": "clipsteer.data.waterbirds:open_waterbirds",
    "celeba": "clipsteer.data.celeba:open_celeba",
    "rta100": "clipsteer.data.typographic_sets:open_rta100",
    "paint": "clipsteer.data.typographic_sets:open_paint",
    "disentangling": "clipsteer.data.typographic_sets:open_disentangling",
    "csv": "clipsteer.data.labels_csv:open_labels_csv",
}
_REGISTERED: dict[str, Opener] = {}


def register_dataset_source(prefix: str, opener: Opener) -> None:
    """Make `open_dataset("<prefix>:<rest>", split)` call `opener(rest, split)`."""
    if not prefix.isidentifier():
        raise ValueError(f"dataset source prefix {prefix!r}: expected a name of letters, digits and _")
    _REGISTERED[prefix] = opener


def _lazy(target: str) -> Opener:
    def opener(rest: str, split: str | None) -> ImageDataset:
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)(rest, split)  # type: ignore[no-any-return]

    return opener


def dataset_sources() -> dict[str, Opener]:
    """Prefix → opener: built-ins, then installed entry points, then code registrations (later ones win)."""
    installed = {ep.name: _lazy(ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {name: _lazy(target) for name, target in _BUILTIN.items()} | installed | _REGISTERED


def open_dataset(spec: str | Path, split: str | None = None, *, model_dir: Path | None = None) -> ImageDataset:
    """Open the dataset named by `spec` (see module docstring), matched to the model in `model_dir` when given;
    errors name the spec and the choices."""
    dataset = _open(str(spec), split)
    if model_dir is not None and isinstance(dataset, ModelMatched):
        return dataset.for_model(Path(model_dir))
    return dataset


def _open(text: str, split: str | None) -> ImageDataset:
    prefix, colon, rest = text.partition(":")
    if colon and prefix.isidentifier() and len(prefix) > 1:  # a one-letter prefix is a Windows drive
        sources = dataset_sources()
        if prefix in sources:
            return sources[prefix](rest, split)
        if not Path(text).expanduser().exists():
            raise ValueError(f"dataset {text!r}: no dataset source {prefix!r} is registered; known sources: "
                             f"{sorted(sources)} (or give an image folder path)")
    path = Path(text).expanduser()
    if path.is_dir():
        if split is not None:
            raise ValueError(f"dataset {text!r} is a plain image folder and has no splits (asked for {split!r}); "
                             "give a labelled spec such as csv:ROOT for a dataset with splits")
        return ImageFolder(path)
    raise FileNotFoundError(f"dataset {text!r}: no such directory; expected an image folder path or "
                            f"'<source>:<spec>' with a registered source ({sorted(dataset_sources())})")
