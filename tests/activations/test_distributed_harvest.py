"""Harvest on 2 gloo ranks (CPU processes): a rank dies mid-part, the job is rerun with torchrun through
`python -m clipsteer harvest`, and the store equals a single-process harvest row for row (and, being cut
into parts in rank order, in the same order). Its parts carry checksums that `clipsteer check` verifies.

No test here can hang: the ranks' collectives time out after RANK_TIMEOUT_S, `run_local` stops its
processes after JOB_TIMEOUT_S, and the torchrun job runs in its own session, killed whole on timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from activation_helpers import labelled_rows, make_image_folder, make_spec, write_store

import clipsteer
from clipsteer.activations import ActivationStore, StoreError, StoreWriter, open_shuffled
from clipsteer.activations.check import check_store
from clipsteer.activations.configs import CheckConfig
from clipsteer.activations.format import (
    PART_FILE,
    PROGRESS_FILE,
    SkippedImage,
    StoreIntegrityError,
    part_directory,
)
from clipsteer.activations.harvest import harvest_dataset
from clipsteer.activations.parts import begin_parted_store, finish_parted_store, plan_parts
from clipsteer.data import ImageFolder
from clipsteer.models.backbone import Backbone
from clipsteer.models.testing import tiny_backbone
from clipsteer.sae.distributed import Sync, process_group, run_local

SITES = ["blocks.1.resid_post", "blocks.2.resid_post"]
RANK_TIMEOUT_S = 120     # a rank waiting longer than this for the other at a collective fails
JOB_TIMEOUT_S = 600      # a 2-process job running longer than this is stopped (a hang) and the test fails
SETTINGS = dict(images_per_batch=4, shard_rows=30, workers=0, progress=False)
CORRUPT = (5, 17)


class DiesAt:
    """The dataset, except that loading image `index` kills the process (a rank lost mid-part)."""

    def __init__(self, dataset: ImageFolder, index: int) -> None:
        self.dataset, self.index = dataset, index

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, i: int):
        if i == self.index:
            os._exit(17)
        return self.dataset.load(i)

    def fingerprint(self) -> str:
        return self.dataset.fingerprint()

    def name(self, i: int) -> str:
        return self.dataset.name(i)


def harvest_as_rank(model: Path, images: Path, out: Path, dies_at: int) -> None:
    torch.set_num_threads(1)
    with process_group(timeout_s=RANK_TIMEOUT_S) as rank:
        dataset = ImageFolder(images)
        harvest_dataset(Backbone.from_pretrained(model), DiesAt(dataset, dies_at) if rank.index == 1 else dataset,
                        SITES, out, dataset_spec=str(images), sync=Sync(rank), **SETTINGS)


def rows_by_index(store: ActivationStore) -> tuple[np.ndarray, torch.Tensor]:
    index = store.read_index(0, store.n_rows)
    order = np.lexsort((index[:, 1], index[:, 0]))
    return index[order], store.read_raw(0, store.n_rows)[torch.from_numpy(order)]


def test_plan_gives_each_rank_whole_batches_in_order() -> None:
    assert plan_parts(22, 4, 2) == [(0, 12), (12, 22)]
    assert plan_parts(22, 4, 4) == [(0, 4), (4, 12), (12, 16), (16, 22)]
    assert plan_parts(3, 4, 2) == [(0, 0), (0, 3)]   # a rank may have nothing to do


def test_two_rank_harvest_killed_and_rerun_with_torchrun_equals_single_process(tmp_path: Path) -> None:
    model = tiny_backbone(seed=0).save_pretrained(tmp_path / "model")
    images = make_image_folder(tmp_path / "images", 22, corrupt=CORRUPT)
    torch.set_num_threads(1)  # the ranks compute with one thread each; so does the reference
    reference = harvest_dataset(Backbone.from_pretrained(model), ImageFolder(images), SITES, tmp_path / "single",
                                dataset_spec=str(images), **SETTINGS)

    out = tmp_path / "ranks"
    with pytest.raises(Exception, match="exit code 17"):  # rank 1 dies at image 20, after its first shard
        run_local(harvest_as_rank, 2, model, images, out, 20, timeout_s=JOB_TIMEOUT_S)
    for site in SITES:
        with pytest.raises(StoreError, match="incomplete"):
            ActivationStore.open(out / site)
        assert json.loads((out / site / "part_00001" / PROGRESS_FILE).read_text())["n_shards"] == 3
        with pytest.raises(StoreError, match="--nproc-per-node 2"):  # not resumable by one process
            harvest_dataset(Backbone.from_pretrained(model), ImageFolder(images), SITES, out,
                            dataset_spec=str(images), **SETTINGS)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(clipsteer.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "clipsteer", "harvest", "--sites", *SITES, "--out", str(out), "--model", str(model), "--dataset",
               str(images), "--images-per-batch", "4", "--shard-rows", "30", "--workers", "0",
               "--dist.timeout-s", str(RANK_TIMEOUT_S)]
    returncode, output = run_job(command, env)
    assert returncode == 0, output[-3000:]
    assert "resuming at image 16/22" in output   # rank 1 resumed its part

    for site in SITES:
        single, parted = ActivationStore.open(reference[site]), ActivationStore.open(out / site)
        assert parted.meta.format_version == 2 and single.meta.format_version == 1
        assert (parted.meta.fingerprint, parted.n_rows, parted.n_images) == (single.meta.fingerprint,
                                                                             single.n_rows, single.n_images)
        assert parted.meta.skipped == single.meta.skipped and [s.index for s in parted.meta.skipped] == list(CORRUPT)
        assert all((out / site / part / PART_FILE).is_file() for part in ("part_00000", "part_00001"))
        (index_a, rows_a), (index_b, rows_b) = rows_by_index(single), rows_by_index(parted)
        assert np.array_equal(index_a, index_b)
        assert torch.equal(rows_a.view(torch.int16), rows_b.view(torch.int16))   # bit for bit
        # the parts in rank order are the single-process order itself
        assert np.array_equal(single.read_index(0, single.n_rows), parted.read_index(0, parted.n_rows))
        assert np.array_equal(single.image_indices(), parted.image_indices())
        # every shard of every part is checksummed, and `clipsteer check` verifies them all
        assert parted.meta.shard_checksums is not None and len(parted.meta.shard_checksums) == parted.n_shards
        check_store(CheckConfig(out / site, progress=False))


def run_job(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a launcher (torchrun) in its own session; on JOB_TIMEOUT_S kill the whole session (launcher and
    ranks) and fail. Returns (exit status, stdout + stderr)."""
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        output, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        pytest.fail(f"{' '.join(command[:8])} ... still running after {JOB_TIMEOUT_S} s (a hang?); killed its "
                    f"process group. Output:\n{output[-3000:]}")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    return job.returncode, output


def write_parts(directory: Path, spec, world: int, skip: tuple[int, ...]) -> None:
    """A version-2 store written part by part, in one process, the way `world` ranks would."""
    plan = plan_parts(spec.n_images_requested, spec.images_per_batch, world)
    assert not begin_parted_store(directory, spec, plan)
    t = spec.n_tokens_per_image
    for rank, (first, stop) in enumerate(plan):
        writer = StoreWriter.open_part(directory / part_directory(rank), spec, first, stop)
        row, kept, skipped = 0, 0, []
        for start in range(first, stop, spec.images_per_batch):
            end = min(start + spec.images_per_batch, stop)
            skipped += [SkippedImage(i, f"img{i}.png", "corrupt") for i in range(start, end) if i in skip]
            kept_images = np.array([i for i in range(start, end) if i not in skip], dtype=np.int64)
            rows = labelled_rows(kept_images, spec)
            index = np.stack([np.repeat(kept_images, t), rows[:, 1].numpy()], axis=1).astype(np.int32)
            writer.add(row, rows, index, start, end, skipped)
            row, kept = row + len(rows), kept + len(kept_images)
        writer.finish_part(kept, skipped)
    finish_parted_store(directory, spec, plan)


def test_a_store_in_parts_reads_like_the_single_process_store(tmp_path: Path) -> None:
    spec = make_spec(n_images=10, images_per_batch=3, shard_rows=7)
    write_store(tmp_path / "single", spec, skip=(4,))
    write_parts(tmp_path / "parts", spec, 3, skip=(4,))
    single, parted = ActivationStore.open(tmp_path / "single"), ActivationStore.open(tmp_path / "parts")
    assert [p.stop_image for p in parted.meta.parts] == [3, 6, 10] and parted.n_shards > single.n_shards
    assert torch.equal(parted.read(2, 40), single.read(2, 40))
    assert np.array_equal(parted.read_index(0, parted.n_rows), single.read_index(0, single.n_rows))
    assert np.array_equal(parted.image_indices(), single.image_indices())
    epoch = next(open_shuffled(tmp_path / "parts", prefetch=False).batches(parted.n_rows, seed=0))
    keys = lambda x: (x[:, 0] * 100 + x[:, 1]).sort().values  # noqa: E731  (image, token) of each row
    assert torch.equal(keys(epoch), keys(single.read(0, single.n_rows)))   # every row once per epoch

    meta_path = tmp_path / "parts" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["parts"][1]["stop_image"] = 7
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="parts cover images"):
        ActivationStore.open(tmp_path / "parts")


def test_a_corrupted_part_shard_is_reported_by_check(tmp_path: Path) -> None:
    spec = make_spec(n_images=10, images_per_batch=3, shard_rows=7)
    write_parts(tmp_path / "parts", spec, 3, skip=(4,))
    store = ActivationStore.open(tmp_path / "parts")
    assert len(store.meta.shard_checksums) == store.n_shards
    check_store(CheckConfig(tmp_path / "parts", progress=False))   # sound
    part = json.loads((tmp_path / "parts" / part_directory(1) / PART_FILE).read_text())
    assert len(part["checksums"]) == part["n_shards"] > 0
    victim = tmp_path / "parts" / part_directory(1) / "shard_00000.bin"
    data = bytearray(victim.read_bytes())
    data[5] ^= 0x01            # one flipped bit, same size: only the checksum can tell
    victim.write_bytes(bytes(data))
    with pytest.raises(StoreIntegrityError, match=r"part_00001/shard_00000\.bin: checksum mismatch"):
        check_store(CheckConfig(tmp_path / "parts", progress=False))
    with pytest.raises(StoreIntegrityError, match="part_00001/shard_00000.bin"):   # and the training loader
        next(open_shuffled(tmp_path / "parts", prefetch=False).batches(store.n_rows, seed=0))


def refused_as_rank(model: Path, images: Path, out: Path, report: Path) -> None:
    """harvest_as_rank, writing the error each rank stops with to report/rank_<r>.txt."""
    try:
        harvest_as_rank(model, images, out, dies_at=-1)
    except Exception as error:   # noqa: BLE001
        (report / f"rank_{os.environ['RANK']}.txt").write_text(f"{type(error).__name__}: {error}")


def test_a_failure_rank_0_sees_stops_every_rank(tmp_path: Path) -> None:
    """OUT holds a store of another harvest: rank 0 refuses it, and rank 1 stops too instead of waiting."""
    model = tiny_backbone(seed=0).save_pretrained(tmp_path / "model")
    images = make_image_folder(tmp_path / "images", 6)
    torch.set_num_threads(1)
    harvest_dataset(Backbone.from_pretrained(model), ImageFolder(images), SITES[:1], tmp_path / "out",
                    dataset_spec=str(images), **{**SETTINGS, "images_per_batch": 3})
    report = tmp_path / "report"
    report.mkdir()
    run_local(refused_as_rank, 2, model, images, tmp_path / "out", report, timeout_s=JOB_TIMEOUT_S)
    said = {r: (report / f"rank_{r}.txt").read_text() for r in (0, 1)}
    assert said[0].startswith("StoreMismatchError") and "images_per_batch" in said[0]
    assert said[1].startswith("DistributedError: rank 0 of 2 failed: StoreMismatchError")
