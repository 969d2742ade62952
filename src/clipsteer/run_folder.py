"""One protocol for every command's output folder: a lock, a config record, a completion marker.

    out/.clipsteer.lock          advisory lock (fcntl.flock) held while a command writes into `out/`;
                                 the kernel drops it when the process dies, so kill -9 never leaves it stuck
    out/<command>.run.json       the run record: command, config, files written, "complete": true|false
    out/<result>                 the command's typed result, written last and atomically

A folder is **complete** for a command when its record says so and its result file exists; anything
else (an interrupted run, a run still going) is visibly incomplete: the record says `"complete":
false` and the result file is absent, because `begin` removes a stale result before any work. A rerun
with the same config continues in place; with a different config it starts clean: the files the
previous run recorded are removed first (never anything it did not write), so results of two
configs are never mixed. Commands whose outputs are expensive (harvest, train) refuse a different
config instead, through their own fingerprints, and use only the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clipsteer.atomic import atomic_write_json, make_folder
from clipsteer.errors import FolderLockedError, RunFolderError, output_error

LOCK_FILE = ".clipsteer.lock"


@contextmanager
def folder_lock(folder: str | Path, command: str, shared: bool = False) -> Iterator[Path]:
    """Create `folder` (OutputError naming it when that fails) and hold its advisory lock.

    A second writer (another process, or a second lock in this one) gets FolderLockedError naming
    the folder and the holder. Yields the folder. `shared=True` takes the lock shared: several holders
    at once (the ranks of one job that each write only their own sub-folder), while an exclusive
    writer is refused and refuses them (see docs/scaling-out.md).
    """
    folder = make_folder(Path(folder))
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise output_error(path, err, "create the lock file") from err
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise FolderLockedError(f"{folder} is being written by {holder}; wait for it to finish or choose "
                                    "another output folder") from None
        os.ftruncate(fd, 0)   # the holder's name, for the message another writer gets
        os.pwrite(fd, f"clipsteer {command} (pid {os.getpid()})\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)   # releases the lock


class RunFolder:
    """The protocol for a command writing `result` (plus other files) into `folder` under `config`.

    Usage (inside `folder_lock`):  `run = RunFolder(out, "eval", config_json, "eval.json"); run.begin();
    ... write files, listing them with run.wrote(...) ...; atomic_write_json(run.result_path, ...);
    run.finish()`.
    """

    def __init__(self, folder: str | Path, command: str, config: dict[str, Any], result: str):
        self.folder = Path(folder)
        self.command = command
        self.config = config
        self.result = result
        self.record_path = self.folder / f"{command}.run.json"
        self.outputs: list[str] = []

    @property
    def result_path(self) -> Path:
        return self.folder / self.result

    def read_record(self) -> dict[str, Any] | None:
        if not self.record_path.is_file():
            return None
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RunFolderError(f"{self.record_path}: unreadable run record ({err}); delete it to start over") from None
        if not isinstance(record, dict) or record.get("command") != self.command:
            raise RunFolderError(f"{self.record_path}: not a clipsteer {self.command} run record; delete it to "
                                 "start over")
        return record

    def begin(self) -> None:
        """Mark the folder incomplete; if it holds a run of another config, remove that run's files first."""
        previous = self.read_record()
        if previous is not None and previous.get("config") != self.config:
            stale = [name for name in previous.get("outputs", []) if isinstance(name, str)]
            print(f"[{self.command}] {self.folder} held a {self.command} run with a different configuration "
                  f"({_diff(previous.get('config'), self.config)}); removing its {len(stale)} files and starting clean")
            self._remove([*stale, self.result])
        else:
            self._remove([self.result])   # a stale result must not mark a half-rewritten folder complete
        self.outputs = list(previous.get("outputs", [])) if previous and previous.get("config") == self.config else []
        self._write_record(complete=False)

    def wrote(self, *paths: str | Path) -> None:
        """Record files this run wrote (so that a rerun with another config can remove exactly them)."""
        for path in map(Path, paths):
            name = path.relative_to(self.folder).as_posix() if path.is_relative_to(self.folder) else path.as_posix()
            if name not in self.outputs:
                self.outputs.append(name)
        self._write_record(complete=False)

    def finish(self) -> None:
        """Call after the result file was written (last, atomically): the folder is complete."""
        assert self.result_path.is_file(), f"{self.result_path} must be written before finish()"
        if self.result not in self.outputs:
            self.outputs.append(self.result)
        self._write_record(complete=True)

    def is_complete(self) -> bool:
        record = self.read_record()
        return bool(record and record.get("complete") and record.get("config") == self.config
                    and self.result_path.is_file())

    def _write_record(self, complete: bool) -> None:
        atomic_write_json(self.record_path, {"command": self.command, "config": self.config, "result": self.result,
                                             "outputs": self.outputs, "complete": complete})

    def _remove(self, names: Iterable[str]) -> None:
        root = self.folder.resolve()
        for name in names:
            path = (self.folder / name).resolve()
            if root in path.parents and path.is_file():   # only files inside the folder
                try:
                    path.unlink()
                except OSError as err:
                    raise output_error(path, err, "remove") from err


def _diff(old: Any, new: Any, prefix: str = "") -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{prefix or 'config'}: {old!r} -> {new!r}"
    parts = [_diff(old.get(k), new.get(k), f"{prefix}{k}.") if isinstance(old.get(k), dict) else
             f"{prefix}{k}: {old.get(k)!r} -> {new.get(k)!r}"
             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(parts)
