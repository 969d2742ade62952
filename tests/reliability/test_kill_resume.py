"""kill -9 at several points of a small harvest and a small training run (subprocesses), resume, and
compare with an uninterrupted run byte for byte. The children are slowed down (a sleep per image or
per batch, which changes no value) so that the kills land mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_helpers import SITE, TRAIN_FLAGS, child_env

from clipsteer.activations.format import PROGRESS_FILE
from clipsteer.cli import run_command

HARVEST_ARGS = ["--sites", SITE, "--images-per-batch", "4", "--shard-rows", "20", "--workers", "0"]

SLOW_HARVEST = """
import sys, time
from clipsteer.data.folder import ImageFolder
ImageFolder.load = (lambda load: lambda self, i: (time.sleep(0.1), load(self, i))[1])(ImageFolder.load)
from clipsteer.cli import main
sys.argv = ["clipsteer", *sys.argv[1:]]
main()
"""

SLOW_TRAIN = """
import sys, time
from clipsteer.activations.shuffled import ShuffledLoader
batches = ShuffledLoader.batches
def slow(self, *args, **kwargs):
    inner = batches(self, *args, **kwargs)
    try:
        for batch in inner:
            time.sleep(0.05)
            yield batch
    finally:
        inner.close()
ShuffledLoader.batches = slow
from clipsteer.cli import main
sys.argv = ["clipsteer", *sys.argv[1:]]
main()
"""


def kill_when(child: str, args: list, ready: Callable[[], bool], timeout: float = 600.0) -> None:
    """Start `child` with `args`, SIGKILL it as soon as `ready()` holds; fail if it finishes first."""
    proc = subprocess.Popen([sys.executable, "-c", child, *map(str, args)], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"finished (status {proc.returncode}) before the kill: {proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready within {timeout}s")
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".clipsteer.lock"}


def shards_done(store: Path) -> int:
    try:
        return json.loads((store / PROGRESS_FILE).read_text())["n_shards"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_harvest_killed_twice_then_resumed_equals_uninterrupted(tmp_path: Path, model_dir: Path,
                                                                 images: Path) -> None:
    run = tmp_path / "run"
    args = ["harvest", "--out", run, "--model", model_dir, "--dataset", images, *HARVEST_ARGS]   # 408 rows: 21 shards
    kill_when(SLOW_HARVEST, args, lambda: shards_done(run / SITE) >= 2)
    first = shards_done(run / SITE)
    kill_when(SLOW_HARVEST, args, lambda: shards_done(run / SITE) >= first + 5)
    assert json.loads((run / SITE / "metadata.json").read_text())["complete"] is False
    run_command(list(map(str, args)))
    run_command(["harvest", "--out", str(tmp_path / "ref"), "--model", str(model_dir), "--dataset", str(images),
                 *HARVEST_ARGS])
    assert files(run) == files(tmp_path / "ref")


@pytest.mark.slow
def test_training_killed_twice_then_resumed_equals_uninterrupted(tmp_path: Path, store: Path) -> None:
    flags = [*TRAIN_FLAGS, "--trainer.total-tokens", "1280", "--trainer.checkpoint-every", "2"]   # 40 steps
    run = tmp_path / "run"

    def steps() -> list[int]:
        folder = run / "checkpoints"
        return [int(p.name[5:]) for p in folder.iterdir() if p.name.startswith("step_")] if folder.is_dir() else []

    kill_when(SLOW_TRAIN, ["train", "--store", store, "--out", run, *flags], lambda: max(steps(), default=0) >= 4)
    first = max(steps())
    kill_when(SLOW_TRAIN, ["train", "--store", store, "--out", run, *flags],
              lambda: max(steps(), default=0) >= first + 10)
    assert not (run / "saes").exists()
    run_command(["train", "--store", str(store), "--out", str(run), *flags])
    run_command(["train", "--store", str(store), "--out", str(tmp_path / "ref"), *flags])
    assert files(run / "saes") == files(tmp_path / "ref" / "saes") != {}
