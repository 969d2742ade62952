"""Typed results: frozen dataclasses written as JSON atomically and read back into the same types.

A result class derives from `ResultFile` and names its file:

    @dataclass(frozen=True)
    class EvalResult(ResultFile):
        FILE: ClassVar[str] = "eval.json"
        sae: str
        reconstruction: Reconstruction      # nested dataclasses, Optional, tuples, dicts and lists work

    result.write(folder)                     # folder/eval.json, atomically
    EvalResult.read(folder)                  # → EvalResult; errors name the file and the field
    EvalResult.done(folder)                  # the step's completion marker: the result exists and parses

A step is done exactly when its result reads back, so later steps never parse another package's
string keys. The reader lives with the writer, in the module that defines the result.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args, get_origin

from clipsteer.atomic import atomic_write_json

T = TypeVar("T", bound="ResultFile")


class ResultFileError(ValueError):
    """A result file that is missing, not JSON, or does not match its type."""


def to_json(value: Any) -> Any:
    """Dataclasses → dicts (recursively), tuples → lists, paths → strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def from_json(kind: Any, data: Any, where: str) -> Any:
    """Build a value of type `kind` from plain JSON data; errors name `where` (file and field path)."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return data
    if kind in (dict, list):  # unparameterised: any JSON object / array
        if not isinstance(data, kind):
            raise ResultFileError(f"{where}: expected a JSON {'object' if kind is dict else 'array'}, got {data!r}")
        return data
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return from_json(option, data, where)
            except ResultFileError as err:
                errors.append(str(err))
        raise ResultFileError(errors[0] if errors else f"{where}: expected {kind}, got {data!r}")
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise ResultFileError(f"{where}: expected an object for {kind.__name__}, got {type(data).__name__}")
        hints = typing.get_type_hints(kind)
        fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
        missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ResultFileError(f"{where}: missing field(s) {missing} of {kind.__name__}")
        return kind(**{n: from_json(hints[n], data[n], f"{where}.{n}") for n in fields if n in data})
    if origin in (tuple, list):
        if not isinstance(data, list):
            raise ResultFileError(f"{where}: expected a list, got {type(data).__name__}")
        item = args[0] if args else Any
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(from_json(a, d, f"{where}[{i}]") for i, (a, d) in enumerate(zip(args, data, strict=True)))
        items = [from_json(item, d, f"{where}[{i}]") for i, d in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, dict):
            raise ResultFileError(f"{where}: expected an object, got {type(data).__name__}")
        value_kind = args[1] if args else Any
        return {k: from_json(value_kind, v, f"{where}.{k}") for k, v in data.items()}
    if kind is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    elif kind is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif kind is bool or kind is str:
        if isinstance(data, kind):
            return data
    elif kind is Path:
        if isinstance(data, str):
            return Path(data)
    elif origin is typing.Literal:
        if data in args:
            return data
    else:
        raise TypeError(f"{where}: unsupported field type {kind!r}")
    raise ResultFileError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {data!r}")


class ResultFile:
    """Mixin for frozen dataclass results stored as one JSON file in a folder."""

    FILE: ClassVar[str]

    @classmethod
    def path(cls, folder: str | Path) -> Path:
        folder = Path(folder)
        return folder if folder.name == cls.FILE else folder / cls.FILE

    def write(self, folder: str | Path) -> Path:
        """Write atomically (the step's completion marker); returns the file."""
        path = self.path(folder)
        atomic_write_json(path, to_json(self))
        return path

    @classmethod
    def read(cls: type[T], folder: str | Path) -> T:
        path = cls.path(folder)
        if not path.is_file():
            raise ResultFileError(f"{path} not found: the step that writes {cls.FILE} has not finished there")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ResultFileError(f"{path}: not valid JSON ({err})") from err
        return from_json(cls, data, str(path))

    @classmethod
    def done(cls, folder: str | Path) -> bool:
        """True when the result exists and reads back as this type (a half-written or stale file is not done)."""
        try:
            cls.read(folder)
        except ResultFileError:
            return False
        return True

