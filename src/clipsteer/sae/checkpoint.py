"""Trainer checkpoints that resume exactly, with no pickle anywhere.

`checkpoints/step_000001000/` holds
- `state.safetensors`: every SAE's parameters and buffers (`sae.{i}.model.*`), Adam moments and step
  counters (`sae.{i}.adam.{param index}.{exp_avg|exp_avg_sq|step}`), firing statistics
  (`sae.{i}.stats.*`) and the torch RNG state (`rng.torch`);
- `state.json`: the step, the SAE names, scalar statistics and the run's config fingerprint.
Learning-rate and coefficient schedules are pure functions of the step, so they need no state; the
data stream restarts at batch `step` through `BatchSource.batches(..., start=step)`.
Each checkpoint folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from clipsteer.atomic import atomic_directory, atomic_save_safetensors, atomic_write_json
from clipsteer.errors import InputFormatError
from clipsteer.sae.updater import SAEUpdater

FORMAT = "clipsteer-trainer-checkpoint"
VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(InputFormatError):
    """A checkpoint that cannot be resumed (corrupt, or from a different run configuration)."""


@dataclass
class Checkpoint:
    folder: Path
    step: int
    meta: dict
    tensors: dict[str, Tensor]


def save_checkpoint(checkpoints_dir: Path, step: int, updaters: list[SAEUpdater], fingerprint: str) -> Path:
    tensors: dict[str, Tensor] = {}
    saes = []
    for i, updater in enumerate(updaters):
        for name, value in updater.sae.state_dict().items():
            tensors[f"sae.{i}.model.{name}"] = value
        for param_index, state in updater.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                assert isinstance(value, Tensor), f"unexpected non-tensor optimizer state {key}={value!r}"
                tensors[f"sae.{i}.adam.{param_index}.{key}"] = value
        for name, value in updater.stats.state_tensors().items():
            tensors[f"sae.{i}.stats.{name}"] = value
        saes.append({"name": updater.name, "window_tokens": updater.stats.window_tokens,
                     "pending_window_summary": updater.pending_window_summary})
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": FORMAT, "version": VERSION, "step": step, "saes": saes, "fingerprint": fingerprint}
    target = checkpoints_dir / f"step_{step:09d}"
    with atomic_directory(target) as tmp:
        atomic_save_safetensors(tensors, tmp / "state.safetensors", metadata={"format": FORMAT})
        atomic_write_json(tmp / "state.json", meta)
    return target


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for child in checkpoints_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / "state.json").is_file() and (child / "state.safetensors").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def prune_checkpoints(checkpoints_dir: Path, keep: int) -> None:
    for _, folder in list_checkpoints(checkpoints_dir)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def load_latest_checkpoint(checkpoints_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint, or None. A corrupt one raises CheckpointError naming the file
    (and the older checkpoint a user can fall back to by deleting it)."""
    found = list_checkpoints(checkpoints_dir)
    if not found:
        return None
    step, folder = found[-1]
    fallback = (f"; delete {folder} to resume from {found[-2][1].name}" if len(found) > 1
                else f"; delete {folder} to start this run over")
    state_json, state_tensors = folder / "state.json", folder / "state.safetensors"
    try:
        meta = json.loads(state_json.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{state_json}: corrupt checkpoint, not valid JSON ({error}){fallback}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        got = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{state_json}: not a clipsteer trainer checkpoint (found {got!r}; expected format "
                              f"{FORMAT!r} version {VERSION}){fallback}")
    if meta.get("step") != step or not isinstance(meta.get("saes"), list):
        raise CheckpointError(f"{state_json}: corrupt checkpoint (step {meta.get('step')!r} for folder step {step}, "
                              f"saes {type(meta.get('saes')).__name__}){fallback}")
    try:
        tensors = load_file(state_tensors)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{state_tensors}: corrupt checkpoint, not a readable safetensors file "
                              f"({str(error).splitlines()[0] if str(error) else type(error).__name__}){fallback}") from None
    return Checkpoint(folder=folder, step=step, meta=meta, tensors=tensors)


def restore_checkpoint(checkpoint: Checkpoint, updaters: list[SAEUpdater], fingerprint: str) -> None:
    """Load SAE weights, optimizer state, statistics and RNG state from `checkpoint` into `updaters`."""
    meta, tensors = checkpoint.meta, checkpoint.tensors
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{checkpoint.folder}: written by a run with a different configuration "
                              "(fingerprint mismatch); resume with the original config or use a new run directory")
    names = [entry.get("name") if isinstance(entry, dict) else None for entry in meta["saes"]]
    if names != [u.name for u in updaters]:
        raise CheckpointError(f"{checkpoint.folder}: holds SAEs {names}, this run trains {[u.name for u in updaters]}")
    missing = [k for k in ("rng.torch",) if k not in tensors]
    if missing or not all(isinstance(e, dict) and "window_tokens" in e for e in meta["saes"]):
        raise CheckpointError(f"{checkpoint.folder}: corrupt checkpoint (missing {missing or 'SAE entries'}); "
                              "delete it to resume from the previous checkpoint")
    for i, (updater, entry) in enumerate(zip(updaters, meta["saes"], strict=True)):
        prefix = f"sae.{i}."
        model_state = {k[len(prefix + "model."):]: v for k, v in tensors.items() if k.startswith(prefix + "model.")}
        try:
            updater.sae.load_state_dict(model_state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"{checkpoint.folder}: SAE {updater.name!r} does not match: {error}") from None
        optim_state: dict[int, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix + "adam."):
                param_index, name = key[len(prefix + "adam."):].split(".", 1)
                optim_state.setdefault(int(param_index), {})[name] = value
        state_dict = updater.optimizer.state_dict()
        state_dict["state"] = optim_state
        stats = {k[len(prefix + "stats."):]: v for k, v in tensors.items() if k.startswith(prefix + "stats.")}
        try:
            updater.optimizer.load_state_dict(state_dict)
            updater.stats.load_state(stats, entry["window_tokens"])
        except (RuntimeError, KeyError, ValueError, AssertionError) as error:
            raise CheckpointError(f"{checkpoint.folder}: optimizer or statistics state of SAE {updater.name!r} does "
                                  f"not match ({type(error).__name__}: {error})") from None
        updater.pending_window_summary = {k: float(v) for k, v in entry.get("pending_window_summary", {}).items()}
    torch.set_rng_state(tensors["rng.torch"])
