"""SIGKILL a harvest mid-run (in a subprocess), resume it: the stores equal an uninterrupted harvest's, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from activation_helpers import make_image_folder

from clipsteer.activations import ActivationStore, StoreError
from clipsteer.activations.format import METADATA_FILE, PROGRESS_FILE
from clipsteer.activations.harvest import harvest_dataset
from clipsteer.data import ImageFolder
from clipsteer.models.testing import tiny_backbone

SITES = ["blocks.1.resid_post", "blocks.2.resid_post"]
SETTINGS = dict(images_per_batch=4, shard_rows=30, workers=1, dataset_spec="images")

# The child harvests a deliberately slow view of the same folder (same fingerprint), so the kill lands mid-run.
CHILD = f"""
import sys, time
from clipsteer.activations.harvest import harvest_dataset
from clipsteer.data import ImageFolder
from clipsteer.models.testing import tiny_backbone

class Slow:
    def __init__(self, ds): self.ds = ds
    def __len__(self): return len(self.ds)
    def load(self, i): time.sleep(0.03); return self.ds.load(i)
    def fingerprint(self): return self.ds.fingerprint()
    def name(self, i): return self.ds.name(i)

harvest_dataset(tiny_backbone(seed=0), Slow(ImageFolder(sys.argv[1])), {SITES!r}, sys.argv[2], progress=False,
                **{SETTINGS!r})
"""


def wait_for_shards(progress_file: Path, n: int, proc: subprocess.Popen, timeout: float = 600.0) -> int:
    # A generous bound: the child imports torch first, which takes minutes on a loaded 2-core machine.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"harvest finished before it could be killed: {proc.communicate()}"
        try:
            done = json.loads(progress_file.read_text())["n_shards"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= n:
            return done
        time.sleep(0.02)
    raise AssertionError(f"no {n} shards within {timeout}s")


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path / "imgs", 60, corrupt=(9, 41))     # 58 × 17 = 986 rows = 33 shards
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p != os.environ.get("CLIPSTEER_OPEN_CLIP_SITE"))}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(images), str(tmp_path / "run")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        done = wait_for_shards(tmp_path / "run" / SITES[1] / PROGRESS_FILE, 3, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and done < 33
    for site in SITES:   # interrupted: marked incomplete, refused by readers
        assert json.loads((tmp_path / "run" / site / METADATA_FILE).read_text())["complete"] is False
        with pytest.raises(StoreError, match="incomplete store"):
            ActivationStore.open(tmp_path / "run" / site)

    backbone, ds = tiny_backbone(seed=0), ImageFolder(images)
    harvest_dataset(backbone, ds, SITES, tmp_path / "run", progress=False, **SETTINGS)
    harvest_dataset(backbone, ds, SITES, tmp_path / "ref", progress=False, **SETTINGS)
    for site in SITES:
        run, ref = tmp_path / "run" / site, tmp_path / "ref" / site
        names = sorted(p.name for p in ref.iterdir())
        assert names == sorted(p.name for p in run.iterdir()) and PROGRESS_FILE not in names
        for name in names:
            assert (run / name).read_bytes() == (ref / name).read_bytes(), f"{site}/{name}"
        meta = ActivationStore.open(run).meta
        assert meta.n_rows == 986 and [s.index for s in meta.skipped] == [9, 41]
