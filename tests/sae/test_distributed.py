"""Training on 2 gloo ranks (CPU processes) against one process: data-parallel training gives the weights of
single-process training on the same global batches; recipes mode gives each SAE exactly its
single-process weights; a rank killed mid-run and the job restarted ends exactly where an uninterrupted
run ends. The ranks are spawned with `run_local` (torchrun's environment without torchrun).

No test here can hang: every rank's collectives time out after RANK_TIMEOUT_S, and `run_local` stops
its processes (and fails) after JOB_TIMEOUT_S; the last tests show both."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from clipsteer.activations.format import StoreSpec
from clipsteer.activations.writer import StoreWriter
from clipsteer.errors import FolderLockedError
from clipsteer.run_folder import folder_lock
from clipsteer.sae import (
    SAEConfig,
    SAERecipe,
    SparseAutoencoder,
    TensorSource,
    Trainer,
    TrainerConfig,
    load_sae,
)
from clipsteer.sae.commands import _train, train
from clipsteer.sae.configs import DistributedConfig, TrainConfig
from clipsteer.sae.distributed import (
    DistributedError,
    Rank,
    RankSlice,
    Sync,
    job_folder_lock,
    pick_backend,
    process_group,
    recipes_for,
    run_local,
)
from clipsteer.sae.recipe import ObjectiveConfig
from clipsteer.sae.updater import SAEUpdater

D, T = 16, 4
RANK_TIMEOUT_S = 120     # a rank waiting longer than this for the other at a collective fails
JOB_TIMEOUT_S = 600      # a 2-process job running longer than this is stopped (a hang) and the test fails
TRAINER = TrainerConfig(tokens_per_batch=64, total_tokens=64 * 10, lr=2e-3, lr_warmup_steps=2, init_samples=128,
                        dead_feature_window=2, feature_sampling_window=4, log_every=3, checkpoint_every=4,
                        progress=False, seed=3)


def sparse_rows(n: int = 512) -> torch.Tensor:
    """[n, D]: non-negative mixtures of 3 of 48 random unit atoms (the children import this module, not conftest)."""
    g = torch.Generator().manual_seed(7)
    atoms = torch.nn.functional.normalize(torch.randn(48, D, generator=g), dim=1)
    chosen = torch.rand(n, 48, generator=g).argsort(dim=1)[:, :3]
    codes = torch.zeros(n, 48).scatter(1, chosen, torch.rand(n, 3, generator=g) + 0.5)
    return codes @ atoms


def write_store(directory: Path) -> None:
    """A complete 512-row store (128 images × 4 tokens) of sparse synthetic activations, fp16."""
    data = sparse_rows()
    spec = StoreSpec(model_name="fake", model_revision="r0", model_dtype="float32", site="blocks.1.resid_post",
                     tokens="all", dtype="float16", d_model=D, n_tokens_per_image=T, first_token=0, shard_rows=96,
                     dataset="fake", dataset_fingerprint="fp", n_images_requested=128, images_per_batch=16)
    writer = StoreWriter.open(directory, spec)
    images = np.arange(128)
    index = np.stack([np.repeat(images, T), np.tile(np.arange(T), 128)], axis=1).astype(np.int32)
    writer.add(0, data, index, 0, 128, [])
    writer.finish(128, [])


def configs(store: Path, out: Path) -> dict[str, TrainConfig]:
    relu = TrainConfig(store=store, out=out / "relu", architecture="relu", expansion_factor=4,
                       sweep_sparsity=(3e-3, 1e-2), trainer=TRAINER,
                       dist=DistributedConfig(mode="data", timeout_s=RANK_TIMEOUT_S))
    return {"relu": relu,
            "topk": replace(relu, out=out / "topk", architecture="topk", k=2, sweep_sparsity=(),
                            objective=ObjectiveConfig(auxk_k=4)),
            "recipes": replace(relu, out=out / "recipes", sweep_sparsity=(1e-3, 3e-3, 1e-2),
                               dist=DistributedConfig(mode="recipes", timeout_s=RANK_TIMEOUT_S))}


def train_as_rank(store: Path, out: Path) -> None:
    torch.set_num_threads(1)
    for config in configs(store, out).values():
        train(config)


def saes(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {folder.name: dict(load_sae(folder).state_dict()) for folder in sorted((out / "saes").iterdir())}


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(single-process runs, 2-rank runs) of every config, on one store."""
    root = tmp_path_factory.mktemp("dist_train")
    write_store(root / "store")
    run_local(train_as_rank, 2, root / "store", root / "ranks", timeout_s=JOB_TIMEOUT_S)
    torch.set_num_threads(1)
    for config in configs(root / "store", root / "single").values():
        train(replace(config, dist=DistributedConfig()))
    return root / "single", root / "ranks"


@pytest.mark.parametrize("name", ["relu", "topk"])
def test_data_parallel_equals_single_process_on_the_same_global_batches(two_rank_runs, name: str) -> None:
    single, ranks = (saes(run / name) for run in two_rank_runs)
    assert single.keys() == ranks.keys() and len(single) == (2 if name == "relu" else 1)
    worst = 0.0
    for sae, state in single.items():
        for key, value in state.items():
            worst = max(worst, float((value - ranks[sae][key]).abs().max()))
            torch.testing.assert_close(ranks[sae][key], value, rtol=0, atol=1e-6, msg=f"{sae}.{key}")
    print(f"{name}: largest weight difference 2 ranks vs 1 process: {worst:.2e}")
    # metrics are written once (rank 0) and describe the global batch
    rows = lambda run: [json.loads(line) for line in (run / name / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    one, two = rows(two_rank_runs[0]), rows(two_rank_runs[1])
    assert [(r["step"], r["sae"]) for r in one] == [(r["step"], r["sae"]) for r in two]
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4) and b["l0"] == pytest.approx(a["l0"], rel=1e-4)
        assert b["explained_variance"] == pytest.approx(a["explained_variance"], rel=1e-4, abs=1e-5)
        assert b["frac_dead"] == a["frac_dead"]
    if name == "topk":  # features die within these few steps (not for relu): AuxK's batch sums span both ranks
        assert any(r["frac_dead"] > 0 and r.get("auxk") for r in two), "AuxK never ran"


def test_recipes_mode_gives_each_sae_exactly_its_single_process_weights(two_rank_runs) -> None:
    single, ranks = (saes(run / "recipes") for run in two_rank_runs)
    assert single.keys() == ranks.keys() and len(single) == 3
    for sae, state in single.items():
        for key, value in state.items():
            assert torch.equal(ranks[sae][key], value), f"{sae}.{key}"
    # rank r kept its own run folder with its share of the sweep
    held = {rank: json.loads((two_rank_runs[1] / "recipes" / f"rank_{rank}" / "config.json").read_text())["recipes"]
            for rank in (0, 1)}
    assert [len(held[0]), len(held[1])] == [2, 1]


# ----- a rank killed mid-run ---------------------------------------------------------------------------------
RECIPES = [SAERecipe("relu", SAEConfig(d_in=D, d_sae=4 * D, architecture="relu")),
           SAERecipe("topk", SAEConfig(d_in=D, d_sae=4 * D, architecture="topk", k=2))]


class KilledAt(RankSlice):
    """Rank 1's stream SIGKILLs its own process when the trainer asks for batch `kill_at`."""

    def __init__(self, parent: TensorSource, rank: Rank, kill_at: int) -> None:
        super().__init__(parent, rank)
        self.kill_at = kill_at

    def batches(self, tokens_per_batch: int, seed: int, start: int = 0):
        for step, batch in enumerate(super().batches(tokens_per_batch, seed, start), start):
            if step == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def trainer_as_rank(runs: list[tuple[Path, int | None]]) -> None:
    torch.set_num_threads(1)
    data = sparse_rows().half().float()  # the store's fp16 values: the same stream as the store tests
    with process_group(timeout_s=RANK_TIMEOUT_S) as rank:
        for run_dir, kill_at in runs:
            source = KilledAt(TensorSource(data), rank, kill_at) if kill_at is not None and rank.index == 1 \
                else RankSlice(TensorSource(data), rank)
            Trainer(RECIPES, source, TRAINER, run_dir=run_dir, sync=Sync(rank)).run()


def test_a_rank_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    # one job: an uninterrupted run, then a run whose rank 1 dies at step 6 (after the step-4 checkpoint)
    with pytest.raises(Exception, match="signal|exit"):
        run_local(trainer_as_rank, 2, [(tmp_path / "whole", None), (tmp_path / "killed", 6)], timeout_s=JOB_TIMEOUT_S)
    assert (tmp_path / "whole" / "saes").is_dir() and not (tmp_path / "killed" / "saes").exists()
    assert (tmp_path / "killed" / "checkpoints" / "step_000000004").is_dir()
    run_local(trainer_as_rank, 2, [(tmp_path / "killed", None)], timeout_s=JOB_TIMEOUT_S)   # resumes at step 4
    for sae in ("relu", "topk"):
        whole, resumed = (load_sae(tmp_path / run / "saes" / sae).state_dict() for run in ("whole", "killed"))
        for key, value in whole.items():
            assert torch.equal(resumed[key], value), f"{sae}.{key}"
    lines = [[{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
              for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("whole", "killed")]
    assert lines[0] == lines[1]


# ----- pieces, in one process ------------------------------------------------------------------------------------
def test_rank_slices_tile_each_global_batch_and_recipes_split_round_robin() -> None:
    source = TensorSource(torch.arange(60.0).reshape(30, 2))
    whole = next(source.batches(6, seed=1, start=2))
    parts = [next(RankSlice(source, Rank(r, 3)).batches(6, seed=1, start=2)) for r in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(DistributedError, match="tokens-per-batch divisible by 4"):
        next(RankSlice(source, Rank(0, 4)).batches(6, seed=1))
    assert recipes_for(Rank(1, 2), ["a", "b", "c"]) == ["b"] and recipes_for(Rank(0, 2), ["a", "b", "c"]) == ["a", "c"]
    assert recipes_for(Rank(), ["a", "b"]) == ["a", "b"]


def test_without_a_launcher_nothing_distributed_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with process_group("cpu") as rank:
        assert rank == Rank() and rank.is_main and not torch.distributed.is_initialized()
    x = torch.ones(3)
    Sync()([x], "sum")  # a world of one: a no-op
    assert torch.equal(x, torch.ones(3))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(DistributedError, match="RANK"):
        Rank.from_env()


def test_backend_follows_the_device_and_bad_launches_are_refused(tmp_path: Path) -> None:
    assert pick_backend("cpu") == "gloo" and pick_backend("cuda:1") == "nccl" and pick_backend("cuda", "gloo") == "gloo"
    with pytest.raises(DistributedError, match="needs a CUDA device"):
        pick_backend("cpu", "nccl")
    write_store(tmp_path / "store")
    config = configs(tmp_path / "store", tmp_path / "out")["relu"]
    with pytest.raises(DistributedError, match="--dist.mode is none"):
        _train(replace(config, dist=DistributedConfig()), Rank(0, 2))
    batchtopk = SAEConfig(d_in=D, d_sae=4 * D, architecture="batchtopk", k=2)
    with pytest.raises(ValueError, match="batchtopk SAEs is not supported"):
        SAEUpdater(SAERecipe("b", batchtopk), SparseAutoencoder(batchtopk), TRAINER, Sync(Rank(0, 2)))


# ----- the output folder's lock under ranks ------------------------------------------------------------------
def lock_as_rank(folder: Path, report: Path) -> None:
    """Enter job_folder_lock(folder) as one of 2 ranks; inside it, rank 1 tries the lock itself (rank 0 holds
    it, so it must be refused). Writes what happened to report/rank_<r>.txt."""
    with process_group(timeout_s=RANK_TIMEOUT_S) as rank:
        outcome = []
        try:
            with job_folder_lock(folder, "harvest", Sync(rank)):
                outcome.append("entered")
                if rank.index == 1:
                    try:
                        with folder_lock(folder, "intruder"):
                            outcome.append("intruder got the lock")
                    except FolderLockedError as error:
                        outcome.append(f"intruder refused: {error}")
        except (FolderLockedError, DistributedError) as error:
            outcome.append(f"{type(error).__name__}: {error}")
        (report / f"rank_{rank.index}.txt").write_text("\n".join(outcome))


def test_rank_0_holds_the_folder_lock_for_the_job_and_every_rank_learns_when_it_is_taken(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    run_local(lock_as_rank, 2, tmp_path / "out", report, timeout_s=JOB_TIMEOUT_S)
    said = {r: (report / f"rank_{r}.txt").read_text().splitlines() for r in (0, 1)}
    assert said[0] == ["entered"]
    assert said[1][0] == "entered" and said[1][1].startswith("intruder refused") and "harvest (pid" in said[1][1]

    with folder_lock(tmp_path / "out", "train"):   # another job holds it: both ranks are refused at once
        run_local(lock_as_rank, 2, tmp_path / "out", report, timeout_s=JOB_TIMEOUT_S)
    said = {r: (report / f"rank_{r}.txt").read_text() for r in (0, 1)}
    assert said[0].startswith("FolderLockedError") and "clipsteer train (pid" in said[0]
    assert said[1].startswith("DistributedError: rank 0 of 2 failed: FolderLockedError")


def test_recipes_mode_ranks_share_the_folder_and_refuse_an_exclusive_writer(tmp_path: Path) -> None:
    with folder_lock(tmp_path, "train --dist.mode recipes", shared=True), \
            folder_lock(tmp_path, "train --dist.mode recipes", shared=True):   # two ranks of one sweep
        with pytest.raises(FolderLockedError, match="being written by clipsteer train --dist.mode recipes"):
            with folder_lock(tmp_path, "train"):
                pass
    with folder_lock(tmp_path, "train"):
        with pytest.raises(FolderLockedError, match="clipsteer train \\(pid"):
            with folder_lock(tmp_path, "train --dist.mode recipes", shared=True):
                pass


# ----- no multi-process test can hang ----------------------------------------------------------------------------
def wait_forever(pids: Path) -> None:
    (pids / f"{os.getpid()}").touch()
    time.sleep(3600)


def barrier_alone(pids: Path) -> None:
    """Rank 1 leaves at once; rank 0 waits for it at a barrier with a 5 s timeout."""
    (pids / f"{os.getpid()}").touch()
    with process_group(timeout_s=5) as rank:
        if rank.index == 0:
            Sync(rank).barrier()


def test_a_hung_job_is_stopped_with_its_processes_and_reported(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DistributedError, match=r"ranks \[0, 1\] of 2 were still running after 20 s"):
        run_local(wait_forever, 2, tmp_path, timeout_s=20)
    assert time.monotonic() - started < 120
    pids = [int(p.name) for p in tmp_path.iterdir()]
    assert len(pids) == 2
    for pid in pids:   # stopped and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_rank_waiting_at_a_barrier_for_a_rank_that_left_fails_instead_of_hanging(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(Exception, match="rank 0|Process 0") as failure:
        run_local(barrier_alone, 2, tmp_path, timeout_s=JOB_TIMEOUT_S)
    assert not isinstance(failure.value, DistributedError), "the barrier's own timeout should end it"
    assert time.monotonic() - started < 120
