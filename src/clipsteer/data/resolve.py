"""Turn a dataset spec string (a CLI value) into an ImageDataset.

Specs:
- a directory path       → `ImageFolder(path)`
- `<prefix>:<rest>`      → a registered dataset source, e.g. `world:train` (the synthetic world)

Sources register a prefix either in code (`register_dataset_source("mine", opener)`) or, for an
installed package, through the entry-point group `clipsteer.datasets` (name = prefix, value =
"module:opener"); clipsteer's own synthetic world registers `world` that way, so this generic layer
never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from clipsteer.data.folder import ImageFolder
from clipsteer.data.protocol import ImageDataset

ENTRY_POINT_GROUP = "clipsteer.datasets"
Opener = Callable[[str], ImageDataset]
_REGISTERED: dict[str, Opener] = {}


def register_dataset_source(prefix: str, opener: Opener) -> None:
    """Make `open_dataset("<prefix>:<rest>")` call `opener(rest)`."""
    if not prefix.isidentifier():
        raise ValueError(f"dataset source prefix {prefix!r}: expected a name of letters, digits and _")
    _REGISTERED[prefix] = opener


def dataset_sources() -> dict[str, Opener]:
    """Registered prefixes: those registered in code win over installed entry points of the same name."""
    installed = {ep.name: ep.load for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {name: (lambda rest, load=load: load()(rest)) for name, load in installed.items()} | _REGISTERED


def open_dataset(spec: str | Path) -> ImageDataset:
    """Open the dataset named by `spec` (see module docstring); errors name the spec and the choices."""
    text = str(spec)
    prefix, colon, rest = text.partition(":")
    if colon and prefix.isidentifier() and len(prefix) > 1:  # a one-letter prefix is a Windows drive
        sources = dataset_sources()
        if prefix in sources:
            return sources[prefix](rest)
        if not Path(text).expanduser().exists():
            raise ValueError(f"dataset {text!r}: no dataset source {prefix!r} is registered; known sources: "
                             f"{sorted(sources)} (or give an image folder path)")
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolder(path)
    raise FileNotFoundError(f"dataset {text!r}: no such directory; expected an image folder path or "
                            f"'<source>:<spec>' with a registered source ({sorted(dataset_sources())})")
