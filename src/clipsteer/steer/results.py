"""Typed results of `clipsteer steerability`, each with its reader:

- `features_<basis>.jsonl` (+ `.csv`): one `FeatureRow` per scored unit (`write_feature_rows`, `read_feature_rows`);
- `concept_matches.json`: `ConceptMatches`, per basis the steerable units' detected factors and whether their
  top concept names one (only where the vocabulary names ground-truth factors);
- `summary.json`: `SteerabilitySummary`, written last (the step's completion marker): the constants actually
  used (α absolute and relative to the layer-normed token norm, τ and the model's logit scale, |V|), one
  `BasisSummary` per basis with its role (the result, the null it is compared with, a baseline, or a labelled
  diagnostic) and concept match, the α sweep, the strength curves, and warnings.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

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


Role = Literal["result", "null", "baseline", "diagnostic"]
NULL_WARNING_LEVEL = 0.5
"""A null this steerable means the metric does not select in this setting."""


@dataclass(frozen=True)
class ConceptMatch:
    """Do steerable units steer towards what they detect? (see `clipsteer.steer.concept_match`)"""

    n_units: int
    """Units checked (the steerable ones)."""
    n_matched: int
    rate: float
    """Fraction of units whose top concept names a factor they detect (0 when n_units = 0)."""
    shuffled_rate: float
    """The same with top concepts permuted among the units (mean over permutations): the baseline."""


@dataclass(frozen=True)
class BasisSummary:
    n_features: int
    n_steerable: int
    fraction_steerable: float
    distinct_concepts: int
    """Distinct top concepts among steerable features."""
    top_concepts: tuple[tuple[str, int], ...]
    """The most common top concepts of steerable features, with counts."""
    role: Role = "result"
    description: str = ""
    concept_match: ConceptMatch | None = None

    @classmethod
    def of(cls, rows: list[FeatureRow], role: Role = "result", description: str = "",
           concept_match: ConceptMatch | None = None) -> BasisSummary:
        steerable = [r for r in rows if r.steerable]
        concepts = Counter(r.top_concept for r in steerable)
        return cls(n_features=len(rows), n_steerable=len(steerable),
                   fraction_steerable=len(steerable) / len(rows) if rows else 0.0,
                   distinct_concepts=len(concepts), top_concepts=tuple(concepts.most_common(10)), role=role,
                   description=description, concept_match=concept_match)


@dataclass(frozen=True)
class StrengthCurve:
    """S and P of one feature against the clamp α (absolute); `paper_alpha` is the same α in the paper's
    units (α = paper_alpha · α_run / 150), empty when the curve was given in absolute units."""

    alpha: tuple[float, ...]
    steerability: tuple[float, ...]
    power: tuple[float, ...]
    paper_alpha: tuple[float, ...] = ()


@dataclass(frozen=True)
class SteerabilitySummary(ResultFile):
    FILE: ClassVar[str] = "summary.json"

    site: str
    vocabulary_size: int
    bases: dict[str, BasisSummary]
    """Per basis (see `clipsteer.steer.commands`): `sae` (result), `null` (random directions), `neurons`,
    `neurons_ln` (baselines), `random_vision_sae`, `random_vision_neurons` (diagnostic)."""
    model: str
    images: str
    n_images: int
    vocabulary: str
    """Where the concepts came from: `tokenizer`, `images:<spec>` or a file; the list is `vocabulary.txt`."""
    alpha: float
    """The clamp used (layer-normed units for SAE features and `neurons_ln`, raw units for `neurons`)."""
    alpha_relative: float
    """α / ‖x̃‖ with ‖x̃‖ = √(d − 1), the layer-normed token norm (the paper: 150 / 27.7 = 5.42)."""
    temperature: float
    logit_scale: float
    """The model's own logit scale (what the paper's τ = 100 is on CLIP)."""
    threshold: float
    tokens: str
    warnings: tuple[str, ...] = ()
    alpha_sweep: dict[str, dict[str, float]] = field(default_factory=dict)
    """basis → {absolute α: fraction steerable}."""
    strength_curves: dict[str, StrengthCurve] = field(default_factory=dict)
    """SAE feature index (as a string) → its curve."""
    config: dict = field(default_factory=dict)

    @property
    def null_fraction(self) -> float | None:
        """The null's fraction steerable, when the run scored one."""
        nulls = [b.fraction_steerable for b in self.bases.values() if b.role == "null"]
        return nulls[0] if nulls else None


def null_warnings(bases: dict[str, BasisSummary]) -> tuple[str, ...]:
    """A warning for every null that is itself ≥ NULL_WARNING_LEVEL steerable."""
    return tuple(f"the null '{name}' (random directions) is itself {b.fraction_steerable:.2f} steerable: in this "
                 f"setting (α, τ, vocabulary) the metric does not tell learnt directions from random ones"
                 for name, b in bases.items() if b.role == "null" and b.fraction_steerable >= NULL_WARNING_LEVEL)


@dataclass(frozen=True)
class UnitMatch:
    """One steerable unit's concept match."""

    feature: int
    top_concept: str
    detects: dict[str, float]
    """Factors the unit detects (image-level AUROC ≥ the threshold), with their AUROC."""
    matches: tuple[str, ...]
    """The detected factors its top concept names (empty: no match)."""


@dataclass(frozen=True)
class ConceptMatches(ResultFile):
    FILE: ClassVar[str] = "concept_matches.json"

    threshold: float
    """AUROC at which a unit counts as detecting a factor."""
    units: dict[str, tuple[UnitMatch, ...]]
    """basis → its steerable units."""


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
