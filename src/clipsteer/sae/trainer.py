"""The training loop: several SAEs on one data stream, checkpoints that resume exactly, one run folder.

Each batch is drawn once from the `BatchSource` and fed to every SAE (a sweep over λ or k shares the
loader). A run folder holds

    config.json        trainer config, recipes, d_in and caller-supplied extras (e.g. the store path)
    metrics.jsonl      one line per SAE per logged step
    checkpoints/       step_XXXXXXXXX/{state.safetensors, state.json}, the newest `keep_checkpoints`
    saes/<name>/       the final SAEs (config.json + sae.safetensors)

Resuming (the default when the folder holds a checkpoint) restores weights, Adam state, firing
statistics and the RNG state, and restarts the stream at the checkpoint's batch, so the final weights
equal those of an uninterrupted run. Fresh runs initialise each SAE from a seeded generator, then read
`init_samples` rows from the start of the stream to set b_dec (geometric median by default, in the
SAE's normalised space), for `constant_scale` the input scale, and (`encoder_init="fitted_scale"`, the
default) the encoder's initial scale.

Data-parallel training (`clipsteer.sae.distributed`) changes only what is injected: a `RankSlice` source
(this rank's rows of each global batch), and a `Sync` that the updaters use and that decides who writes:
the run folder, checkpoints, metrics and final SAEs are written by rank 0 only, every rank resumes from
the same checkpoint, and the initial weights are rank 0's. Rank 0 holds the run folder's lock for the
whole run (`distributed.job_folder_lock`); the other ranks learn at the start whether it got it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from clipsteer.atomic import atomic_write_json
from clipsteer.errors import RunFolderError
from clipsteer.sae.checkpoint import (
    load_latest_checkpoint,
    prune_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from clipsteer.sae.distributed import LOCAL, Sync, job_folder_lock
from clipsteer.sae.geometric_median import geometric_median
from clipsteer.sae.io import save_sae
from clipsteer.sae.metrics_log import JsonlSink, MetricsSink, check_extra_sinks, open_extra_sinks
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.sae.normalization import estimate_input_scale
from clipsteer.sae.recipe import NON_SEMANTIC_FIELDS, SAERecipe, TrainerConfig
from clipsteer.sae.schedules import cosine_with_warmup
from clipsteer.sae.source import BatchSource, pinned, rows_per_batch, whole_stream
from clipsteer.sae.updater import SAEUpdater

FIT_SCALE_ROWS = 1024  # rows used to fit the initial encoder scale (a dense [n, d_sae] code matrix is built)


class RunDirectoryError(RunFolderError):
    """A run folder that holds a different or unfinished run than the one requested."""


def _jsonify(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonify(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonify(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonify(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


class Trainer:
    def __init__(self, recipes: Sequence[SAERecipe], source: BatchSource, config: TrainerConfig,
                 run_dir: str | Path | None = None, extra: dict[str, Any] | None = None, *,
                 saes_dir: str | Path | None = None, sync: Sync = LOCAL) -> None:
        """run_dir: the run folder (None: nothing is written); saes_dir: where the final SAEs go (default
        run_dir/saes); sync: the data-parallel group this trainer is one rank of (default: none)."""
        if not recipes:
            raise ValueError("Trainer: no SAE recipes given")
        names = [r.name for r in recipes]
        if len(set(names)) != len(names):
            raise ValueError(f"Trainer: SAE names must be unique, got {names}")
        d_in = getattr(source, "d_in", None)
        for recipe in recipes:
            if recipe.sae.d_in != d_in:
                raise ValueError(f"Trainer: SAE {recipe.name!r} has d_in={recipe.sae.d_in} but the batch source "
                                 f"yields rows of width {d_in}")
        check_extra_sinks(config.loggers)
        self.recipes = list(recipes)
        self.source = source
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.saes_dir = Path(saes_dir) if saes_dir is not None else (
            self.run_dir / "saes" if self.run_dir is not None else None)
        self.sync = sync
        self.writes = self.run_dir is not None and sync.rank.is_main
        """Whether this process writes the run folder (rank 0 of a data-parallel group)."""
        self.extra = dict(extra or {})
        self.history: list[dict[str, Any]] = []  # every logged metrics row, also when run_dir is None

    # ----- run description ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"trainer": _jsonify(self.config), "recipes": _jsonify(self.recipes), "d_in": self.source.d_in,
                "extra": _jsonify(self.extra)}

    def _semantic(self, description: dict[str, Any]) -> dict[str, Any]:
        trainer = {k: v for k, v in description["trainer"].items() if k not in NON_SEMANTIC_FIELDS}
        return {"trainer": trainer, "recipes": description["recipes"], "d_in": description["d_in"]}

    def fingerprint(self) -> str:
        blob = json.dumps(self._semantic(self.describe()), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ----- building blocks -------------------------------------------------------------------------------
    def _build_updaters(self) -> list[SAEUpdater]:
        updaters = []
        for recipe in self.recipes:
            generator = torch.Generator().manual_seed(self.config.seed)
            sae = SparseAutoencoder(recipe.sae, generator=generator, device=self.config.device)
            updaters.append(SAEUpdater(recipe, sae, self.config, self.sync))
        return updaters

    @torch.no_grad()
    def _initialise(self, updaters: list[SAEUpdater]) -> None:
        config = self.config
        n_batches = math.ceil(config.init_samples / config.tokens_per_batch)
        stream = whole_stream(self.source).batches(config.tokens_per_batch, config.seed, 0)
        try:
            rows = list(itertools.islice(stream, n_batches))
        finally:
            _close(stream)
        sample = torch.cat(rows)[: config.init_samples].to(config.device, torch.float32)
        for updater in updaters:
            sae, objective = updater.sae, updater.recipe.objective
            if sae.config.normalization == "constant_scale":
                sae.input_scale.fill_(estimate_input_scale(sample))
            if sae.spec.threshold == "per_feature":
                sae.log_threshold.fill_(math.log(objective.jumprelu_init_threshold))
            x_norm, _ = sae.normalize_input(sample)
            if config.b_dec_init == "geometric_median":
                sae.b_dec.copy_(geometric_median(x_norm))
            elif config.b_dec_init == "mean":
                sae.b_dec.copy_(x_norm.mean(dim=0))
            sae.set_decoder_unit_norm_()
            if config.encoder_init == "fitted_scale":
                fit_encoder_scale_(sae, sample[:FIT_SCALE_ROWS])
            self.sync(list(sae.state_dict().values()), "from_main")  # ranks start from identical weights

    def _prepare_run_dir(self, resume: bool) -> None:
        assert self.run_dir is not None
        config_path = self.run_dir / "config.json"
        described = self.describe()
        has_state = any((self.run_dir / sub).exists() for sub in ("checkpoints", "saes"))
        if config_path.is_file():
            if not resume and has_state:
                raise RunDirectoryError(f"{self.run_dir} already holds a run; resume it (resume=True) or choose "
                                        "another run directory")
            try:
                stored = json.loads(config_path.read_text(encoding="utf-8"))
                self._semantic(stored)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
                raise RunDirectoryError(f"{config_path}: unreadable run config ({type(error).__name__}: {error}); "
                                        "choose another run directory or delete this one") from None
            if resume and self._semantic(stored) != self._semantic(described):
                diff = _diff(self._semantic(stored), self._semantic(described))
                raise RunDirectoryError(f"{self.run_dir} holds a run with a different configuration ({diff}); "
                                        "resume it with the same settings or choose another run directory")
        elif has_state:
            raise RunDirectoryError(f"{self.run_dir} has checkpoints or SAEs but no config.json; refusing to mix runs")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(config_path, described)

    # ----- the loop -----------------------------------------------------------------------------------------
    def run(self, *, resume: bool = True, stop_after_step: int | None = None) -> dict[str, SparseAutoencoder]:
        """Train to `config.total_steps` (or stop, with a checkpoint, after `stop_after_step` steps).

        Returns the SAEs by name, ready for inference (constant scales folded, eval mode).
        """
        if self.run_dir is None:
            return self._run(resume, stop_after_step)
        with job_folder_lock(self.run_dir, "train", self.sync):   # a second trainer on the folder is refused
            return self._run(resume, stop_after_step)

    def _run(self, resume: bool, stop_after_step: int | None) -> dict[str, SparseAutoencoder]:
        config = self.config
        total = config.total_steps
        updaters = self._build_updaters()
        fingerprint = self.fingerprint()
        start = 0
        checkpoint, error = None, None
        try:   # a refused folder or a corrupt checkpoint stops every rank (agree), not only the one that saw it
            if self.writes:
                self._prepare_run_dir(resume)
            if self.run_dir is not None and resume:
                checkpoint = load_latest_checkpoint(self.run_dir / "checkpoints")
        except Exception as err:   # noqa: BLE001
            error = err
        self.sync.agree(error)
        if checkpoint is not None:
            restore_checkpoint(checkpoint, updaters, fingerprint)
            start = checkpoint.step
        else:
            self._initialise(updaters)
        sinks: list[MetricsSink] = []
        if self.writes:
            assert self.run_dir is not None
            JsonlSink.truncate_after(self.run_dir / "metrics.jsonl", start)
            sinks.append(JsonlSink(self.run_dir / "metrics.jsonl"))
            sinks += open_extra_sinks(config.loggers, self.run_dir, config.wandb_project, self.describe())
        end = total if stop_after_step is None else min(total, stop_after_step)
        try:
            self._loop(updaters, sinks, start, end, total, fingerprint)
        finally:
            for sink in sinks:
                sink.close()
        if self.writes and end == total:
            assert self.saes_dir is not None
            for updater in updaters:
                save_sae(updater.sae, self.saes_dir / updater.name)
        self.sync.barrier()  # the SAEs exist on disk when run() returns on any rank
        return {u.name: u.sae.folded().eval() for u in updaters}

    def _loop(self, updaters: list[SAEUpdater], sinks: list[MetricsSink], start: int, end: int, total: int,
              fingerprint: str) -> None:
        config = self.config
        expected = (rows_per_batch(self.source, config.tokens_per_batch), self.source.d_in)
        stream = self.source.batches(config.tokens_per_batch, config.seed, start)
        feed = pinned(stream) if torch.device(config.device).type == "cuda" else stream
        bar = tqdm(total=total, initial=start, disable=not (config.progress and self.sync.rank.is_main),
                   desc="train SAE", unit="step",
                   dynamic_ncols=True)
        last_time, last_step = time.perf_counter(), start
        try:
            for step in range(start, end):
                x = next(feed)
                if tuple(x.shape) != expected:
                    raise ValueError(f"batch source yielded a batch of shape {tuple(x.shape)} at step {step}; "
                                     f"expected {expected}")
                x = x.to(config.device, torch.float32, non_blocking=True)
                lr = cosine_with_warmup(step, base=config.lr, warmup=config.lr_warmup_steps, total=total,
                                        end_factor=config.lr_end_factor)
                want = step == 0 or (step + 1) % config.log_every == 0 or step + 1 == total
                rows = [(u.name, u.step(x, step, lr, want_metrics=want)) for u in updaters]
                bar.update(1)
                if want:
                    now = time.perf_counter()
                    speed = (step + 1 - last_step) * config.tokens_per_batch / max(now - last_time, 1e-9)
                    last_time, last_step = now, step + 1
                    for name, metrics in rows:
                        assert metrics is not None
                        metrics["tokens_per_s"] = speed
                        self.history.append({"step": step + 1, "sae": name, **metrics})
                        for sink in sinks:
                            sink.log(step + 1, name, metrics)
                    first = rows[0][1]
                    assert first is not None
                    bar.set_postfix(loss=f"{first['loss']:.4g}", l0=f"{first['l0']:.1f}",
                                    ev=f"{first['explained_variance']:.3f}")
                done = step + 1
                if self.writes and (done % config.checkpoint_every == 0 or done == end):
                    assert self.run_dir is not None
                    save_checkpoint(self.run_dir / "checkpoints", done, updaters, fingerprint)
                    prune_checkpoints(self.run_dir / "checkpoints", config.keep_checkpoints)
        finally:
            bar.close()
            _close(feed)
            _close(stream)


@torch.no_grad()
def fit_encoder_scale_(sae: SparseAutoencoder, sample: Tensor) -> float:
    """Rescale W_enc (and JumpReLU thresholds) by the c that fits the reconstruction of `sample` [n, d_in]
    to it: least squares, min_c Σ‖(x̃ − b_dec) − c·(x̂̃ − b_dec)‖², or norm matching, widened for wide SAEs
    and capped (the architecture's `EncoderScale`); returns c.

    With W_enc = W_decᵀ and unit decoder rows, a ReLU SAE's first reconstruction is ≈ (d_sae / 2d_in)·x̃
    (half the features fire, and Σ_j w_j w_jᵀ ≈ (d_sae / d_in)·I for random unit rows): 8× too large at
    ×16, 32× at ×64, so the first steps are spent shrinking the codes. With b_enc = 0 the codes are
    positively homogeneous in W_enc (the TopK selection does not change; JumpReLU thresholds are scaled
    along), so scaling W_enc by c scales x̂̃ − b_dec by exactly c.
    """
    was_training = sae.training
    sae.train()
    x_norm, _ = sae.normalize_input(sample.to(sae.W_enc.dtype))
    target = x_norm - sae.b_dec
    produced = sae.trace(sample.to(sae.W_enc.dtype)).recon_norm - sae.b_dec
    sae.train(was_training)
    rule = sae.spec.encoder_scale
    if rule.fit == "norm":
        scale = float(target.pow(2).sum().sqrt() / produced.pow(2).sum().sqrt().clamp_min(1e-12))
    else:
        scale = float((target * produced).sum() / produced.pow(2).sum().clamp_min(1e-12))
    if not math.isfinite(scale) or scale <= 0:
        return 1.0  # nothing fires, or the fit is degenerate: keep the plain transpose
    scale = rule.widen(scale, sae.config.expansion_factor)
    sae.W_enc.mul_(scale)
    if sae.spec.threshold == "per_feature":  # thresholds live in pre-activation units
        sae.log_threshold.add_(math.log(scale))
    return scale


def _close(stream: object) -> None:
    """Close a batch generator so that a loader's background workers stop (a no-op for plain iterators)."""
    close = getattr(stream, "close", None)
    if callable(close):
        close()


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str:
    keys = sorted(set(old) | set(new))
    parts = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            parts.append(_diff(a, b, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return "; ".join(p for p in parts if p)
