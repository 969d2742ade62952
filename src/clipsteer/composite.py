"""Composite commands (layer-sweep, demo, ...) nest the component commands' configs unchanged, so a
flag means the same thing everywhere: `clipsteer train --trainer.lr` is `clipsteer layer-sweep
--train.trainer.lr`. The composite owns a few fields of each component (paths it wires together, the
model, the device, the seed) and sets them with `own`, which refuses a value the user gave for them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def field_default(config: Any, name: str) -> Any:
    f = next(f for f in dataclasses.fields(config) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def own(config: T, command: str, flag_prefix: str, **values: Any) -> T:
    """`config` with `values` set; a ValueError if the user changed any of them from its default.

    Dotted names reach into nested configs: `own(train, "layer-sweep", "train", **{"trainer.seed": 3})`.
    """
    for dotted in values:
        *parents, name = dotted.split(".")
        holder = config
        for parent in parents:
            holder = getattr(holder, parent)
        if getattr(holder, name) != field_default(holder, name):
            flag = "--" + ".".join([flag_prefix, *parents, name]).replace("_", "-")
            raise ValueError(f"{command}: {flag} is set by {command} itself (it wires the steps together); "
                             f"leave it unset and use {command}'s own flags (--model, --out, --device, --seed)")
    return replace_nested(config, values)


def replace_nested(config: T, values: dict[str, Any]) -> T:
    """dataclasses.replace with dotted names for nested configs."""
    direct = {k: v for k, v in values.items() if "." not in k}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if "." in key:
            head, rest = key.split(".", 1)
            nested.setdefault(head, {})[rest] = value
    for head, inner in nested.items():
        direct[head] = replace_nested(getattr(config, head), inner)
    return dataclasses.replace(config, **direct)
