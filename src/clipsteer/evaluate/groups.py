"""Group metrics over predictions (numpy), for any labelled dataset: accuracy per group, worst-group
accuracy (WGA), and the typographic-attack report. Pure functions and typed results with readers.

`avg` is the mean over groups (each group weighs the same, the protocol of group-balanced test sets);
`accuracy` is over all examples; `weighted_avg(weights)` re-weights the group accuracies, e.g. to the
training group proportions (Waterbirds' reported "average accuracy").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """pred, target int [N] → fraction equal."""
    assert pred.shape == target.shape and pred.ndim == 1 and len(pred) > 0, (pred.shape, target.shape)
    return float((pred == target).mean())


@dataclass(frozen=True)
class GroupReport:
    groups: dict[str, float]
    """Accuracy per group name, in group-index order."""
    counts: dict[str, int]
    """Examples per group."""

    @property
    def wga(self) -> float:
        """Worst-group accuracy."""
        return min(self.groups.values())

    @property
    def avg(self) -> float:
        """Mean of the group accuracies (every group weighs the same)."""
        return float(np.mean(list(self.groups.values())))

    @property
    def accuracy(self) -> float:
        """Accuracy over all examples (groups weighted by their counts)."""
        return self.weighted_avg(self.counts)

    def weighted_avg(self, weights: Mapping[str, float]) -> float:
        """Group accuracies averaged with `weights` (e.g. training-set group proportions; normalised here)."""
        missing = set(self.groups) - set(weights)
        if missing:
            raise ValueError(f"weighted_avg: no weight for group(s) {sorted(missing)}")
        total = sum(weights[g] for g in self.groups)
        return float(sum(self.groups[g] * weights[g] for g in self.groups) / total)

    def to_json(self) -> dict:
        return {"wga": self.wga, "avg": self.avg, **asdict(self)}

    @classmethod
    def mean_of(cls, reports: Sequence[GroupReport]) -> GroupReport:
        """Group accuracies averaged over reports of the same examples (e.g. random draws)."""
        counts = reports[0].counts
        assert all(r.counts == counts for r in reports), "mean_of: reports of different examples"
        return cls({g: float(np.mean([r.groups[g] for r in reports])) for g in counts}, dict(counts))

    @classmethod
    def from_json(cls, data: Mapping) -> GroupReport:
        return cls(groups={k: float(v) for k, v in data["groups"].items()},
                   counts={k: int(v) for k, v in data["counts"].items()})


def group_report(correct: np.ndarray, group: np.ndarray, names: Sequence[str]) -> GroupReport:
    """correct bool [N], group int [N] in 0..len(names)-1 → accuracy per group; every group must occur."""
    assert correct.shape == group.shape and correct.ndim == 1, (correct.shape, group.shape)
    accs, counts = {}, {}
    for g, name in enumerate(names):
        in_group = group == g
        if not in_group.any():
            raise ValueError(f"group {name!r} has no examples; a group metric needs every group")
        accs[name] = float(correct[in_group].mean())
        counts[name] = int(in_group.sum())
    return GroupReport(accs, counts)


@dataclass(frozen=True)
class TypographicReport:
    clean_accuracy: float
    attacked_accuracy: float
    """Object accuracy under attack (OCA): the true class wins although a wrong word is written."""
    text_capture_rate: float
    """How often the prediction is the written (wrong) word."""
    blank_accuracy: float | None = None
    """With a blank note in place of the word: the occlusion ceiling (None when not measured)."""
    blank_capture_rate: float | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def mean_of(cls, reports: Sequence[TypographicReport]) -> TypographicReport:
        """Field-wise mean of reports of the same images (e.g. random draws)."""
        def mean(name: str) -> float | None:
            values = [getattr(r, name) for r in reports]
            return None if any(v is None for v in values) else float(np.mean(values))

        return cls(**{name: mean(name) for name in cls.__dataclass_fields__})  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: Mapping) -> TypographicReport:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


def typographic_report(clean_pred: np.ndarray, attacked_pred: np.ndarray, target: np.ndarray, written: np.ndarray,
                       blank_pred: np.ndarray | None = None) -> TypographicReport:
    """Predictions int [N] of the clean / attacked (/ blank-note) variants of the same images."""
    if not (written != target).all():
        raise ValueError("typographic attacks must write a wrong class word: written == target for some images")
    blank = blank_pred is not None
    return TypographicReport(
        clean_accuracy=accuracy(clean_pred, target), attacked_accuracy=accuracy(attacked_pred, target),
        text_capture_rate=accuracy(attacked_pred, written),
        blank_accuracy=accuracy(blank_pred, target) if blank else None,
        blank_capture_rate=accuracy(blank_pred, written) if blank else None)
