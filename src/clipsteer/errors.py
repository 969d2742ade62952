"""The error families clipsteer reports to users; the CLI prints each as one `clipsteer: error: …` line.

Every message names the file, folder or flag at fault and what was expected. The families subclass
the builtin a caller would naturally catch (ValueError for bad input, OSError for an output that cannot
be written), so library users need not import this module to handle them.

    ClipsteerError
    ├── ConfigError        (ValueError)   a config file or flag value: names the file/flag, field and expected type
    ├── InputFormatError   (ValueError)   an input file that is unreadable, corrupt or of another format
    │   ├── UnsafeFileError               reading it would run code (a pickle, a YAML python tag): refused
    │   └── IntegrityError                checksum mismatch or non-finite values in stored data
    ├── RunFolderError     (ValueError)   an output folder that holds a different run
    │   └── FolderLockedError             another process is writing to the same output folder
    ├── OutputError        (OSError)      an output that cannot be written (read-only, full disk, ...)
    └── DistributedError   (RuntimeError) a torchrun launch that cannot work, or another rank's failure
                                          (defined in clipsteer.sae.distributed)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class ClipsteerError(Exception):
    """Base of the errors the CLI reports in one line (exit status 2)."""


class ConfigError(ClipsteerError, ValueError):
    """A config file or flag value of the wrong type or out of range."""


class InputFormatError(ClipsteerError, ValueError):
    """An input file that cannot be read as what it claims to be."""


class UnsafeFileError(InputFormatError):
    """A file whose loading would execute code (pickled objects, YAML python tags); never loaded."""


class IntegrityError(InputFormatError):
    """Stored data that fails its checksum or holds non-finite values."""


class RunFolderError(ClipsteerError, ValueError):
    """An output folder that holds a different (or unrelated) run."""


class FolderLockedError(RunFolderError):
    """Another process holds the output folder's lock."""


class OutputError(ClipsteerError, OSError):
    """An output that cannot be written; the message names the path and the system's reason."""


def output_error(path: str | Path, err: OSError, doing: str = "write") -> OutputError:
    """An OutputError naming `path` and the system's reason (e.g. 'No space left on device')."""
    reason = err.strerror or str(err) or type(err).__name__
    return OutputError(f"cannot {doing} {path}: {reason}")


def check_positive(owner: object, names: Iterable[str], allow_none: bool = True) -> None:
    """Raise ConfigError naming the flag (`--n-images`) when a size field of a config is not ≥ 1."""
    for name in names:
        value = getattr(owner, name)
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be a positive number, got {value!r}")
