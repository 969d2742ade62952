"""Metric sinks: always `metrics.jsonl` in the run directory; wandb / tensorboard when asked for and installed.

Each JSONL line is one SAE at one step: {"step": 100, "sae": "relu_l1=1e-4", "loss": ..., ...}.
On resume, lines after the checkpoint step are dropped so the file matches an uninterrupted run's steps.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Protocol

from clipsteer.atomic import atomic_write_text


class MetricsSink(Protocol):
    def log(self, step: int, sae: str, metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def _jsonable(value: float) -> float | None:
    return value if math.isfinite(value) else None


class JsonlSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("a", encoding="utf-8")

    @staticmethod
    def truncate_after(path: Path, step: int) -> None:
        """Keep only lines with step <= `step` (atomic rewrite)."""
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line from a crash
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def log(self, step: int, sae: str, metrics: dict[str, float]) -> None:
        row: dict[str, Any] = {"step": step, "sae": sae}
        row.update({k: _jsonable(float(v)) for k, v in metrics.items()})
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class WandbSink:
    def __init__(self, project: str, run_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        self._run = wandb.init(project=project, dir=str(run_dir), config=config, name=run_dir.name, resume="allow")

    def log(self, step: int, sae: str, metrics: dict[str, float]) -> None:
        self._run.log({f"{sae}/{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self._run.finish()


class TensorboardSink:
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, step: int, sae: str, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if math.isfinite(value):
                self._writer.add_scalar(f"{sae}/{key}", value, step)

    def close(self) -> None:
        self._writer.close()


def check_extra_sinks(names: tuple[str, ...]) -> None:
    """Raise now (before any training) if a requested optional sink is unknown or its package is missing."""
    for name in names:
        package = {"wandb": "wandb", "tensorboard": "tensorboard"}.get(name)
        if package is None:
            raise ValueError(f"unknown logger {name!r}; expected 'wandb' or 'tensorboard'")
        if importlib.util.find_spec(package) is None:
            raise ImportError(f"logger {name!r} was requested but the {package!r} package is not installed "
                              f"(pip install {package}), or drop it from TrainerConfig.loggers")


def open_extra_sinks(names: tuple[str, ...], run_dir: Path, project: str, config: dict[str, Any]) -> list[MetricsSink]:
    """Open the requested optional sinks; a missing package is an error naming how to install it."""
    check_extra_sinks(names)
    return [WandbSink(project, run_dir, config) if name == "wandb" else TensorboardSink(run_dir) for name in names]
