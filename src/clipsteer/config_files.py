"""Read a frozen config dataclass from a TOML or YAML file, with errors that name the bad field."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def load_config_file(path: str | Path, config_cls: type[T]) -> T:
    """Parse `path` (.toml, .yaml or .yml) into `config_cls`; unknown keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"config file {path}: expected a .toml, .yaml or .yml file")
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a table/mapping at the top level")
    return from_dict(config_cls, data, where=str(path))


def from_dict(config_cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a (possibly nested) dataclass from plain data, converting paths, tuples and nested tables."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} for {config_cls.__name__}; "
                         f"expected some of {sorted(fields)}")
    hints = typing.get_type_hints(config_cls)
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    return config_cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where) if len(args) == 1 else value
    if tp is Path:
        return Path(value)
    if origin is tuple and isinstance(value, list):
        inner = typing.get_args(tp)
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(_convert(inner[0], v, where) for v in value)
        return tuple(value)
    return value
