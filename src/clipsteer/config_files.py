"""Read a frozen config dataclass from a TOML or YAML file: the one validation layer for config files.

Every field is checked against its dataclass type (nested configs included) before the dataclass is
built, and every error is a `ConfigError` naming the file, the dotted field and the expected type:

    config.toml: field trainer.batch_size: expected an integer, got 'abc' (str)

Accepted values: int (not bool) for int; int or float for float; str for str and Path; one of the
choices for a Literal; a list for a tuple; a table/mapping for a nested config; null/None only where
the type allows None. TOML and YAML syntax errors name the file and the line; YAML is read with the
safe loader, so a `!!python/...` tag is refused rather than run.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from clipsteer.errors import ConfigError, UnsafeFileError

T = TypeVar("T")


def load_config_file(path: str | Path, config_cls: type[T]) -> T:
    """Parse `path` (.toml, .yaml or .yml) into `config_cls`; unknown keys and wrong types are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path}: invalid TOML: {err}") from None
    elif path.suffix in (".yaml", ".yml"):
        data = _load_yaml(text, path)
    else:
        raise ConfigError(f"config file {path}: expected a .toml, .yaml or .yml file")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table/mapping at the top level, got "
                          f"{type(data).__name__}")
    return from_dict(config_cls, data, where=f"config file {path}")


def _load_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.constructor.ConstructorError as err:
        tag = getattr(err, "problem", "") or ""
        if "python" in tag or "python" in str(err):
            raise UnsafeFileError(f"config file {path}: refused a YAML python tag ({_yaml_where(err)}); "
                                  "config files hold plain values only, nothing is constructed or run") from None
        raise ConfigError(f"config file {path}: invalid YAML ({_yaml_where(err)}: {tag})") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"config file {path}: invalid YAML ({_yaml_where(err)}: {problem})") from None


def _yaml_where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"


def from_dict(config_cls: type[T], data: dict[str, Any], where: str = "config", prefix: str = "") -> T:
    """Build a (possibly nested) dataclass from plain data, checking every value against its field type."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(prefix + u for u in unknown)} for "
                          f"{config_cls.__name__}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(config_cls)
    kwargs = {name: _convert(hints[name], value, where, prefix + name) for name, value in data.items()}
    try:
        return config_cls(**kwargs)
    except (ValueError, TypeError, AssertionError) as err:  # a dataclass's own __post_init__ checks
        raise ConfigError(f"{where}: {prefix.rstrip('.') or config_cls.__name__}: {err}") from None


def describe(tp: Any) -> str:
    """A type in words, as error messages show it."""
    origin = typing.get_origin(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is Path:
        return "a path (string)"
    if dataclasses.is_dataclass(tp):
        return f"a table of {tp.__name__} fields"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
    return getattr(tp, "__name__", repr(tp))


def _convert(tp: Any, value: Any, where: str, field: str) -> Any:
    def bad() -> ConfigError:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return ConfigError(f"{where}: field {field}: expected {describe(tp)}, got {shown} ({type(value).__name__})")

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        return from_dict(tp, value, where, prefix=f"{field}.")  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, field)
            except ConfigError:
                continue
        raise bad()
    if origin is typing.Literal:
        if not any(type(value) is type(a) and value == a for a in typing.get_args(tp)):
            raise bad()
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise bad()
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where, f"{field}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad()
        return tuple(_convert(a, v, where, f"{field}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad()
        return value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise bad()
        return Path(value)
    raise ConfigError(f"{where}: field {field}: type {tp!r} cannot be read from a config file")
