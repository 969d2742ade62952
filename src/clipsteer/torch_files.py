"""Read `.pt` / `.bin` files written by `torch.save` without running foreign code.

`torch.save` pickles, and unpickling can call any importable function: a `__reduce__` payload runs the
moment a file is loaded. Every `.pt` / `.bin` file clipsteer reads goes through `load_torch_file`, which
is torch's weights-only unpickler (tensors, containers, numbers, strings, `torch.device`, `torch.dtype`)
plus, when the caller names them, foreign config classes mapped by their fully qualified name to inert
records (`ForeignRecord`: the pickled fields as a plain dict). No foreign module is imported and no
method of a foreign class runs; every other global is refused with `UnsafePickleError`.

Why this shape: ViT-Prisma's `save_model` pickles `{"cfg": VisionModelSAERunnerConfig, "state_dict": ...}`.
Plain `weights_only=True` rejects that file outright; `weights_only=False` would run whatever the file
says. Naming the one config class as data keeps torch's audited unpickler in charge of everything else.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch

_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# The line of torch's weights-only error that says what was refused (the rest is boilerplate, and its
# advice to allow-list the global is exactly what must not be done with a file from elsewhere).
_REASON = re.compile(r"(Unsupported global.*?|Trying to .*?|Can only create .*?|WeightsUnpickler error: .*?)"
                     r"(?= Please use|$)", re.MULTILINE)


class TorchFileError(ValueError):
    """A `.pt` / `.bin` file that cannot be read as a torch checkpoint (names the file)."""


class UnsafePickleError(TorchFileError):
    """A torch file holding Python objects clipsteer will not unpickle (names the file and the object)."""


def strip_terminal_escapes(text: str) -> str:
    """Remove ANSI escape sequences (colours, bold) so quoted library messages print cleanly."""
    return _TERMINAL_ESCAPE.sub("", text)


class ForeignRecord:
    """The fields of a pickled object of a foreign class, kept as data: `record.fields` is a dict.

    Built by the unpickler without calling any code of the foreign class (which is never imported).
    """

    qualified_name: ClassVar[str] = ""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.qualified_name}: expected its fields as a dict, "
                                         f"got {type(state).__name__}")
        self.__dict__["fields"] = dict(state)

    @property
    def fields(self) -> dict[str, Any]:
        return self.__dict__.get("fields", {})

    def __repr__(self) -> str:
        return f"ForeignRecord({self.qualified_name}, {len(self.fields)} fields)"


def inert_record_class(qualified_name: str) -> type[ForeignRecord]:
    """A ForeignRecord subclass standing in for `qualified_name` (e.g. 'pkg.module.ClassName')."""
    name = qualified_name.rsplit(".", 1)[-1]
    return type(f"Inert{name}", (ForeignRecord,), {"qualified_name": qualified_name})


def refusal_reason(message: str) -> str:
    """The one informative sentence of a weights-only unpickling error, without terminal escapes."""
    clean = strip_terminal_escapes(message)
    match = _REASON.search(clean)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in clean.splitlines() if line.strip()]
    return lines[0] if lines else "unknown reason"


def load_torch_file(path: str | Path, inert_classes: Iterable[str] = ()) -> Any:
    """Load a `torch.save` file with the weights-only unpickler; `inert_classes` (fully qualified names)
    load as `ForeignRecord`s. Tensors land on the CPU. Anything else is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    records = [(inert_record_class(name), name) for name in inert_classes]
    try:
        with torch.serialization.safe_globals(records):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafePickleError(
            f"{path}: refused to load: the file holds Python objects beyond plain tensors and known configs, "
            f"and clipsteer never unpickles them ({refusal_reason(str(error))}). Re-save just the tensors, "
            "e.g. torch.save(sae.state_dict(), path), or convert to safetensors") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise TorchFileError(f"{path}: not a readable torch checkpoint "
                             f"({refusal_reason(str(error))})") from None
