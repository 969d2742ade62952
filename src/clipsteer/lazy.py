"""Lazy package exports: a package names what it exports and where each name lives, and the module is
imported on first use. Light modules (configs, site names) then import without torch and transformers,
which keeps `clipsteer CMD --help` and `import clipsteer` fast.

    __getattr__, __all__ = lazy_exports(__name__, {"Backbone": "clipsteer.models.backbone", ...})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """(module `__getattr__`, `__all__`) for a package exporting `exports` (name → defining module)."""
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(table[name]), name)

    return __getattr__, sorted(table)
