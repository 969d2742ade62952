"""Trainer: exact resume, shared data stream, run folder, schedules, dead-feature terms, bf16, the CLI."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sparse_world import SparseWorld
from torch.utils._python_dispatch import TorchDispatchMode

from clipsteer.sae import (
    ObjectiveConfig,
    SAEConfig,
    SAERecipe,
    TensorSource,
    Trainer,
    TrainerConfig,
    load_sae,
)
from clipsteer.sae.checkpoint import CheckpointError, list_checkpoints
from clipsteer.sae.schedules import cosine_with_warmup, linear_warmup
from clipsteer.sae.source import page_locked, pinned
from clipsteer.sae.trainer import RunDirectoryError
from clipsteer.sae.updater import SAEUpdater

D = 32


def recipes(d_sae: int = 64) -> list[SAERecipe]:
    return [
        SAERecipe("relu", SAEConfig(d_in=D, d_sae=d_sae, normalization="layer_norm"),
                  ObjectiveConfig(sparsity_coefficient=3e-3, sparsity_warmup_steps=5)),
        SAERecipe("topk", SAEConfig(d_in=D, d_sae=4 * d_sae, architecture="topk", k=4, normalization="constant_scale"),
                  ObjectiveConfig(auxk_k=8)),
        SAERecipe("jumprelu", SAEConfig(d_in=D, d_sae=d_sae, architecture="jumprelu"),
                  ObjectiveConfig(sparsity_coefficient=1e-3, jumprelu_bandwidth=0.1, jumprelu_init_threshold=0.05)),
        SAERecipe("batchtopk", SAEConfig(d_in=D, d_sae=4 * d_sae, architecture="batchtopk", k=4)),
    ]


def config(steps: int = 24, **overrides: object) -> TrainerConfig:
    fields: dict = dict(tokens_per_batch=64, total_tokens=64 * steps, lr=5e-3, lr_warmup_steps=4, init_samples=256,
                        dead_feature_window=3, feature_sampling_window=7, log_every=5, checkpoint_every=6,
                        progress=False)
    fields.update(overrides)
    return TrainerConfig(**fields)


def state_of(trainer_saes: dict) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.clone() for name, sae in trainer_saes.items() for key, value in sae.state_dict().items()}


def metric_lines(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("tokens_per_s")
    return rows


class FailingSource:
    """Delegates to a TensorSource but raises when batch `fail_at` (absolute index) would be served."""

    def __init__(self, inner: TensorSource, fail_at: int | None) -> None:
        self.inner, self.fail_at, self.d_in = inner, fail_at, inner.d_in
        self.starts: list[int] = []

    def batches(self, tokens_per_batch: int, seed: int, start: int = 0) -> Iterator[torch.Tensor]:
        self.starts.append(start)
        for i, batch in enumerate(self.inner.batches(tokens_per_batch, seed, start), start=start):
            if i == self.fail_at:
                raise KeyboardInterrupt("simulated crash")
            yield batch


# ----- exact resume -------------------------------------------------------------------------------------------

def test_interrupted_and_resumed_run_equals_uninterrupted_run(world: SparseWorld, tmp_path: Path) -> None:
    source = TensorSource(world.data[:4096])
    straight = Trainer(recipes(), source, config(), run_dir=tmp_path / "straight").run()

    # 1) stop cleanly after 10 steps, 2) crash while fetching batch 17 (last checkpoint: step 12), 3) finish.
    run_dir = tmp_path / "interrupted"
    Trainer(recipes(), source, config(), run_dir=run_dir).run(stop_after_step=10)
    assert [step for step, _ in list_checkpoints(run_dir / "checkpoints")] == [6, 10]
    crashing = FailingSource(source, fail_at=17)
    with pytest.raises(KeyboardInterrupt):
        Trainer(recipes(), crashing, config(), run_dir=run_dir).run()
    assert crashing.starts == [10]  # the stream resumed at the checkpoint's batch, not at 0
    finishing = FailingSource(source, fail_at=None)
    resumed = Trainer(recipes(), finishing, config(), run_dir=run_dir).run()
    assert finishing.starts == [12]

    expected, got = state_of(straight), state_of(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key  # bitwise
    assert metric_lines(run_dir) == metric_lines(tmp_path / "straight")
    # dead-feature machinery was active before the interruption, so its state had to be restored too
    rows = metric_lines(run_dir)
    assert all(any("auxk" in r for r in rows if r["sae"] == name) for name in ("topk", "batchtopk"))


def test_finished_run_is_not_retrained_and_checkpoints_are_pruned(world: SparseWorld, tmp_path: Path) -> None:
    source = TensorSource(world.data[:2048])
    run_dir = tmp_path / "run"
    first = Trainer(recipes()[:1], source, config(steps=13, keep_checkpoints=2), run_dir=run_dir).run()
    assert [s for s, _ in list_checkpoints(run_dir / "checkpoints")] == [12, 13]
    counting = FailingSource(source, fail_at=None)
    again = Trainer(recipes()[:1], counting, config(steps=13, keep_checkpoints=2), run_dir=run_dir).run()
    assert counting.starts == []  # nothing left to read
    assert torch.equal(first["relu"].W_dec, again["relu"].W_dec)


def test_resume_refuses_a_different_configuration(world: SparseWorld, tmp_path: Path) -> None:
    source = TensorSource(world.data[:2048])
    run_dir = tmp_path / "run"
    Trainer(recipes()[:1], source, config(steps=6), run_dir=run_dir).run(stop_after_step=3)
    with pytest.raises(RunDirectoryError, match=r"different configuration \(trainer.lr: 0.005 -> 0.001\)"):
        Trainer(recipes()[:1], source, config(steps=6, lr=1e-3), run_dir=run_dir).run()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        Trainer(recipes()[:1], source, config(steps=6), run_dir=run_dir).run(resume=False)
    # logging cadence is not part of the result, so it may change on resume
    Trainer(recipes()[:1], source, config(steps=6, log_every=1), run_dir=run_dir).run()
    # a checkpoint written by another run is refused
    other = tmp_path / "other"
    Trainer(recipes()[:1], source, config(steps=6, seed=7), run_dir=other).run(stop_after_step=3)
    state = other / "checkpoints" / "step_000000003" / "state.json"
    state.write_text(state.read_text().replace('"fingerprint": "', '"fingerprint": "x'))
    with pytest.raises(CheckpointError, match="fingerprint mismatch"):
        Trainer(recipes()[:1], source, config(steps=6, seed=7), run_dir=other).run()


# ----- shared stream, run folder ------------------------------------------------------------------------------------

def test_a_sweep_draws_each_batch_once_and_feeds_it_to_every_sae(world: SparseWorld, tmp_path: Path) -> None:
    source = FailingSource(TensorSource(world.data[:2048]), fail_at=None)
    twins = [SAERecipe(name, SAEConfig(d_in=D, d_sae=64), ObjectiveConfig(sparsity_coefficient=3e-3))
             for name in ("a", "b")]
    sweep = twins + [SAERecipe("c", SAEConfig(d_in=D, d_sae=64), ObjectiveConfig(sparsity_coefficient=3e-2))]
    trainer = Trainer(sweep, source, config(steps=8), run_dir=tmp_path / "run")
    saes = trainer.run()
    assert source.starts == [0, 0]  # one read for initialisation, one training stream
    assert torch.equal(saes["a"].W_enc, saes["b"].W_enc)  # identical recipes saw identical batches
    assert not torch.equal(saes["a"].W_enc, saes["c"].W_enc)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [".clipsteer.lock", "checkpoints", "config.json", "metrics.jsonl", "saes"]
    described = json.loads((run / "config.json").read_text())
    assert [r["name"] for r in described["recipes"]] == ["a", "b", "c"] and described["d_in"] == D
    rows = metric_lines(run)
    assert {r["step"] for r in rows} == {1, 5, 8} and {r["sae"] for r in rows} == {"a", "b", "c"}
    torch.testing.assert_close(load_sae(run / "saes" / "c").W_dec, saes["c"].W_dec)


def test_metrics_report_windows_and_schedules(world: SparseWorld) -> None:
    trainer = Trainer(recipes()[:1], TensorSource(world.data[:2048]), config(steps=14, log_every=7))
    trainer.run()
    first, second, last = trainer.history
    assert last["step"] == 14
    assert first["step"] == 1 and second["step"] == 7
    assert second["sparsity_coefficient"] == pytest.approx(3e-3)  # warmed up after 5 steps
    assert first["sparsity_coefficient"] == pytest.approx(3e-3 / 5)
    assert "window_frac_dense" in second and 0 <= second["window_frac_never_fired"] <= 1
    assert 0 < second["explained_variance"] <= 1 and second["l0"] > 0


# ----- schedules, sources -------------------------------------------------------------------------------------------

def test_lr_schedule_warms_up_then_decays_to_a_tenth() -> None:
    lrs = [cosine_with_warmup(s, base=1.0, warmup=4, total=20, end_factor=0.1) for s in range(20)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert linear_warmup(0, target=2.0, warmup=4) == 0.5 and linear_warmup(9, target=2.0, warmup=4) == 2.0
    assert linear_warmup(0, target=2.0, warmup=0) == 2.0


def test_tensor_source_is_deterministic_and_start_skips_batches() -> None:
    source = TensorSource(torch.arange(50.0).reshape(25, 2))
    stream = source.batches(4, seed=3)
    first = [next(stream) for _ in range(14)]  # 6 batches per epoch: crosses two epoch boundaries
    resumed = source.batches(4, seed=3, start=9)
    for expected in first[9:]:
        assert torch.equal(next(resumed), expected)
    epoch = torch.cat(first[:6])[:, 0]
    assert len(set(epoch.tolist())) == 24  # each row at most once per epoch
    assert not torch.equal(torch.cat(first[:6]), torch.cat(first[6:12]))  # reshuffled per epoch
    other_seed = source.batches(4, seed=4)
    assert not torch.equal(next(other_seed), first[0])
    with pytest.raises(ValueError, match="larger than the 25 rows"):
        next(source.batches(26, seed=0))


def test_pinned_batches_arrive_in_order_through_the_pin_function() -> None:
    source = TensorSource(torch.arange(64.0).reshape(32, 2))
    threads = set()

    def pin(batch: torch.Tensor) -> torch.Tensor:
        threads.add(threading.current_thread().name)
        return batch + 0.5

    stream = source.batches(4, seed=1)
    feed = pinned(stream, pin)
    got = [next(feed) for _ in range(10)]
    feed.close()
    stream.close()
    expected = list(itertools.islice(source.batches(4, seed=1), 10))
    assert all(torch.equal(a, b + 0.5) for a, b in zip(got, expected, strict=True))
    assert threads == {"clipsteer-pin"}  # pinned off the training thread


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_page_locked_pins_host_batches_and_passes_device_batches_through() -> None:
    assert page_locked(torch.ones(4, 2)).is_pinned()
    on_device = torch.ones(4, 2, device="cuda")
    assert page_locked(on_device) is on_device


def test_trainer_checks_widths_and_batch_shapes(world: SparseWorld) -> None:
    with pytest.raises(ValueError, match="d_in=16 but the batch source yields rows of width 32"):
        Trainer([SAERecipe("x", SAEConfig(d_in=16, d_sae=32))], TensorSource(world.data), config())

    class Ragged(TensorSource):
        def batches(self, tokens_per_batch: int, seed: int, start: int = 0) -> Iterator[torch.Tensor]:
            yield from super().batches(tokens_per_batch - 1, seed, start)

    with pytest.raises(ValueError, match=r"shape \(63, 32\) at step 0; expected \(64, 32\)"):
        Trainer(recipes()[:1], Ragged(world.data[:2048]), config()).run()


# ----- dead features, bf16 ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("architecture", "term"), [("relu", "ghost_grad"), ("topk", "auxk"), ("jumprelu", "ghost_grad")])
def test_dead_features_get_gradient_from_ghost_grads_or_auxk(world: SparseWorld, architecture: str, term: str) -> None:
    k = 4 if architecture == "topk" else None
    recipe = SAERecipe("s", SAEConfig(d_in=D, d_sae=64, architecture=architecture, k=k, normalization="none"),
                       ObjectiveConfig(sparsity_coefficient=1e-3, auxk_k=8))
    from clipsteer.sae.model import SparseAutoencoder
    sae = SparseAutoencoder(recipe.sae, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc[:16] = -4.0  # features 0..15 never fire (but exp(pre) is not 0, so ghost grads work)
    updater = SAEUpdater(recipe, sae, config(dead_feature_window=1))
    before = sae.W_enc[:, :16].detach().clone()
    metrics = [updater.step(world.data[i * 64:(i + 1) * 64], i, 1e-3, want_metrics=True) for i in range(4)]
    assert term not in metrics[0] and term in metrics[-1]  # dead only after the window
    assert metrics[-1]["frac_dead"] >= 16 / 64
    assert not torch.equal(before, sae.W_enc[:, :16].detach())  # the dead features are being pulled back


@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_bf16_autocast_trains_like_fp32_with_fp32_state(world: SparseWorld, architecture: str) -> None:
    k = 4 if architecture == "topk" else None
    recipe = SAERecipe("s", SAEConfig(d_in=D, d_sae=64, architecture=architecture, k=k), ObjectiveConfig(sparsity_coefficient=3e-3))
    final = {}
    for bf16 in (False, True):
        trainer = Trainer([recipe], TensorSource(world.data[:4096]), config(steps=40, autocast_bf16=bf16, log_every=39))
        sae = trainer.run()["s"]
        assert sae.W_enc.dtype == torch.float32
        final[bf16] = trainer.history[-1]["reconstruction"]
        assert final[bf16] < trainer.history[0]["reconstruction"]
    assert final[True] < 1.25 * final[False]


# ----- host reads, non-finite losses ---------------------------------------------------------------------------------------

class HostReads(TorchDispatchMode):
    """Records the ops that make the host wait for the device (a scalar read, or a shape that depends on values)."""

    WAITING = {"_local_scalar_dense", "nonzero", "is_nonzero", "equal", "masked_select"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        boolean_index = name == "index" and any(t is not None and t.dtype == torch.bool for t in args[1])
        if name in self.WAITING or boolean_index:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["relu", "topk", "jumprelu", "batchtopk"])
def test_a_step_reads_the_device_once_before_its_forward_and_once_after_its_backward(world: SparseWorld,
                                                                                   name: str) -> None:
    # On a GPU every such read idles the device while the host queues what follows; a step has two: the dead
    # count (it sets AuxK's shape) and one copy of [loss, gradient norm] after the backward (a tolist, which the
    # dispatcher does not see). Dead features are present so that the AuxK / ghost-grad paths run too.
    (recipe,) = [r for r in recipes() if r.name == name]
    from clipsteer.sae.model import SparseAutoencoder
    sae = SparseAutoencoder(recipe.sae, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc[:16] = -20.0  # features 0..15 never fire
    updater = SAEUpdater(recipe, sae, config(dead_feature_window=0))
    for i in range(2):
        updater.step(world.data[i * 64:(i + 1) * 64], i, 1e-3)
    assert int(updater.stats.dead_mask(0).sum()) > 0
    with HostReads() as reads:
        updater.step(world.data[128:192], 2, 1e-3)
    assert reads.ops == ["_local_scalar_dense"], reads.ops


def test_a_non_finite_loss_stops_the_step_before_the_update(world: SparseWorld) -> None:
    (recipe,) = [r for r in recipes() if r.name == "topk"]
    from clipsteer.sae.model import SparseAutoencoder
    sae = SparseAutoencoder(recipe.sae, generator=torch.Generator().manual_seed(0))
    updater = SAEUpdater(recipe, sae, config())
    updater.step(world.data[:64], 0, 1e-3)
    before = state_of({"s": sae})
    bad = world.data[64:128].clone()
    bad[3, 5] = float("nan")
    with pytest.raises(FloatingPointError, match=r"SAE 'topk': non-finite loss nan at step 1"):
        updater.step(bad, 1, 1e-3)
    after = state_of({"s": sae})
    assert all(torch.equal(before[key], after[key]) for key in before)


# ----- `clipsteer train` ----------------------------------------------------------------------------------------------------

def test_train_command_builds_a_sweep_and_writes_saes(world: SparseWorld, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import clipsteer.activations.loaders as loaders
    from clipsteer.cli import run_command

    opened = []

    def fake_open_shuffled(store_dir: Path, tokens: str = "all") -> TensorSource:
        opened.append((Path(store_dir), tokens))
        return TensorSource(world.data[:2048])

    monkeypatch.setattr(loaders, "open_shuffled", fake_open_shuffled)
    out = tmp_path / "run"
    folders = run_command(["train", "--store", str(tmp_path / "store"), "--out", str(out), "--tokens", "patches",
                           "--architecture", "topk", "--expansion-factor", "2", "--sweep-k", "3", "5",
                           "--normalization", "none", "--trainer.tokens-per-batch", "64", "--trainer.total-tokens", "640",
                           "--trainer.init-samples", "128", "--trainer.no-progress"])
    assert opened == [(tmp_path / "store", "patches")]
    assert sorted(folders) == ["topk_x2_k3", "topk_x2_k5"]
    sae = load_sae(folders["topk_x2_k5"])
    assert sae.config.k == 5 and sae.config.d_sae == 2 * D and sae.config.tokens == "patches"
    with pytest.raises(ValueError, match="--sweep-k needs architecture topk or batchtopk"):
        run_command(["train", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "x"), "--sweep-k", "3"])


def test_train_command_reads_a_real_activation_store(tmp_path: Path) -> None:
    """End to end through clipsteer.activations: a store written by StoreWriter, read by open_shuffled."""
    from clipsteer.activations.format import StoreSpec
    from clipsteer.activations.writer import StoreWriter
    from clipsteer.sae.commands import train
    from clipsteer.sae.configs import TrainConfig

    n_images, tokens, d = 40, 5, 16
    spec = StoreSpec(model_name="fake-clip", model_revision="r0", model_dtype="float32", site="blocks.1.resid_post",
                     tokens="all", dtype="float16", d_model=d, n_tokens_per_image=tokens, first_token=0,
                     shard_rows=64, dataset="fake", dataset_fingerprint="fp", n_images_requested=n_images, images_per_batch=8)
    writer = StoreWriter.open(tmp_path / "store", spec)
    rows = torch.randn(n_images * tokens, d, generator=torch.Generator().manual_seed(0))
    for start in range(0, n_images, 8):
        images = np.arange(start, start + 8)
        index = np.stack([np.repeat(images, tokens), np.tile(np.arange(tokens), 8)], axis=1).astype(np.int32)
        writer.add(start * tokens, rows[start * tokens:(start + 8) * tokens], index, start, start + 8, [])
    writer.finish(n_images, [])
    run = TrainConfig(store=tmp_path / "store", out=tmp_path / "run", expansion_factor=2,
                      trainer=TrainerConfig(tokens_per_batch=32, total_tokens=320, init_samples=64, progress=False))
    folders = train(run)
    sae = load_sae(folders[next(iter(folders))])
    assert sae.config.site == "blocks.1.resid_post" and sae.config.model == "fake-clip" and sae.d_in == d
    assert bool(torch.isfinite(sae.W_enc.detach()).all())


def test_optional_loggers_need_their_package(world: SparseWorld, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ImportError, match=r"'wandb' package is not installed \(pip install wandb\)"):
        Trainer(recipes()[:1], TensorSource(world.data[:2048]), config(steps=2, loggers=("wandb",)),
                run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written
