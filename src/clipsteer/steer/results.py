"""Typed results of `clipsteer steerability`: per-feature rows (`features_<basis>.jsonl`) and the
summary (`summary.json`, written last: the step's completion marker), each with its reader."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from clipsteer.results import ResultFile, ResultFileError, from_json


@dataclass(frozen=True)
class FeatureRow:
    feature: int
    steerability: float
    """S_j = Σ_v Δ_j(v)²."""
    power: float
    """P_j = max_v Δ_j(v)."""
    top_concept: str
    steerable: bool


@dataclass(frozen=True)
class BasisSummary:
    n_features: int
    n_steerable: int
    fraction_steerable: float
    distinct_concepts: int
    """Distinct top concepts among steerable features."""
    top_concepts: tuple[tuple[str, int], ...]
    """The most common top concepts of steerable features, with counts."""

    @classmethod
    def of(cls, rows: list[FeatureRow]) -> BasisSummary:
        steerable = [r for r in rows if r.steerable]
        concepts = Counter(r.top_concept for r in steerable)
        return cls(n_features=len(rows), n_steerable=len(steerable),
                   fraction_steerable=len(steerable) / len(rows) if rows else 0.0,
                   distinct_concepts=len(concepts), top_concepts=tuple(concepts.most_common(10)))


@dataclass(frozen=True)
class StrengthCurve:
    alpha: tuple[float, ...]
    steerability: tuple[float, ...]
    power: tuple[float, ...]


@dataclass(frozen=True)
class SteerabilitySummary(ResultFile):
    FILE: ClassVar[str] = "summary.json"

    site: str
    vocabulary_size: int
    bases: dict[str, BasisSummary]
    """Per basis: `sae`, `neurons`, and the random-weights control's `random_sae`, `random_neurons`."""
    alpha_sweep: dict[str, dict[str, float]] = field(default_factory=dict)
    """basis → {α: fraction steerable}."""
    strength_curves: dict[str, StrengthCurve] = field(default_factory=dict)
    """SAE feature index (as a string) → its curve."""
    config: dict = field(default_factory=dict)


def rows_file(folder: Path, basis: str) -> Path:
    return Path(folder) / f"features_{basis}.jsonl"


def write_feature_rows(rows: list[FeatureRow], folder: Path, basis: str) -> tuple[Path, Path]:
    """features_<basis>.jsonl (the typed record) and .csv (for spreadsheets), both atomically; returns both."""
    from clipsteer.atomic import atomic_write_text

    path = rows_file(folder, basis)
    atomic_write_text(path, "".join(json.dumps(asdict(r)) + "\n" for r in rows))
    header = list(FeatureRow.__dataclass_fields__)
    atomic_write_text(path.with_suffix(".csv"), ",".join(header) + "\n" + "".join(
        ",".join(str(getattr(r, h)) for h in header) + "\n" for r in rows))
    return path, path.with_suffix(".csv")


def read_feature_rows(folder: Path, basis: str = "sae") -> list[FeatureRow]:
    path = rows_file(folder, basis)
    if not path.is_file():
        raise ResultFileError(f"{path} not found: no steerability rows for basis {basis!r} there")
    try:
        lines = path.read_text().splitlines()
        return [from_json(FeatureRow, json.loads(line), f"{path}:{i + 1}") for i, line in enumerate(lines)]
    except json.JSONDecodeError as err:
        raise ResultFileError(f"{path}: not valid JSON lines ({err})") from err
