"""What the report reads from a run directory, in one place: discovery and the views the pages need.

The report reads other packages' outputs here only, through their typed readers (`EvalResult`,
`SteerabilitySummary`, `read_feature_rows`), into the small views the pages need. Outputs that have no
reader yet (the concept match, the debias / typographic results) are parsed here too, each in one
function, so connecting their readers later changes one function.

A run directory is searched, not assumed: every clipsteer SAE folder under it (`config.json` with
`"format": "clipsteer-sae"` + `sae.safetensors`) is one entry. Its activation store is the complete
store under the run with the SAE's site; its evaluation is the `eval.json` that names the SAE; its
steerability is the folder whose `summary.json` names that SAE (or, failing that, the only one at its
site). Optional results (debiasing, typographic defense) are shown when their files exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clipsteer.activations.format import METADATA_FILE
from clipsteer.sae.io import CONFIG_NAME, FORMAT, WEIGHTS_NAME
from clipsteer.steer.results import FeatureRow, StrengthCurve

if TYPE_CHECKING:
    from clipsteer.evaluate.results import EvalResult


class RunDirectoryError(FileNotFoundError):
    """A run directory that holds nothing the report can show."""


@dataclass(frozen=True)
class Quality:
    """SAE quality numbers of one SAE (from its evaluation, or from the report's own pass over the store)."""

    explained_variance: float
    l0_patches: float | None
    l0_cls: float | None
    dead_fraction: float
    source: str
    """Where the numbers come from, shown beside them."""
    ce_recovered_pct: float | None = None
    factor_auroc: float | None = None
    """Mean best-feature AUROC over the ground-truth factors (world runs only)."""
    factor_auroc_control: float | None = None
    """The same for an untrained SAE of the same shape: the baseline factor_auroc must beat."""
    density_edges: tuple[float, ...] = ()
    density_counts: tuple[int, ...] = ()
    factor_best: dict[str, tuple[int, float]] = field(default_factory=dict)
    """factor → (best feature, its image-level AUROC)."""


@dataclass(frozen=True)
class Steering:
    """One steerability run: its settings, per-basis fractions and feature rows, and extras when present."""

    directory: Path
    site: str
    alpha: float
    temperature: float
    threshold: float
    tokens: str
    images: str
    n_images: int
    vocabulary: Path | None
    vocab_size: int
    """The requested vocabulary size (recreates the same word list)."""
    n_words: int
    """Words the vocabulary actually held."""
    fractions: dict[str, float]
    """basis → fraction steerable; bases: sae, neurons, random_sae, random_neurons (random = null model)."""
    rows: dict[str, tuple[FeatureRow, ...]]
    alpha_sweep: dict[str, dict[float, float]] = field(default_factory=dict)
    strength_curves: dict[int, StrengthCurve] = field(default_factory=dict)
    detected_factors: dict[int, dict[str, float]] = field(default_factory=dict)
    """feature → {factor: AUROC ≥ 0.8} from the concept match (world runs only)."""
    concept_matched: frozenset[int] = frozenset()
    """Steerable features whose top concept names a factor they detect."""


@dataclass(frozen=True)
class SAEEntry:
    """One SAE of the run and everything found about it."""

    name: str
    sae_dir: Path
    site: str
    d_sae: int
    architecture: str
    model: str | None
    store_dir: Path | None
    quality: Quality | None
    steering: Steering | None

    @property
    def layer(self) -> int | None:
        parts = self.site.split(".")
        return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


@dataclass(frozen=True)
class GroupResult:
    """A before/after comparison of one suppression experiment (debiasing task or typographic defense)."""

    title: str
    metrics: dict[str, tuple[float, float]]
    """metric → (before, after), e.g. wga, avg, attacked_accuracy."""
    groups: dict[str, tuple[float, float]]
    """group → accuracy (before, after)."""
    removed_features: tuple[int, ...]
    site: str | None
    per_layer: dict[int, dict[str, float]] = field(default_factory=dict)
    """layer → metric → value after suppression, for the per-layer plot."""
    controls: dict[str, dict[str, float]] = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); rerun the step that writes it") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def find_saes(run: Path) -> list[Path]:
    """clipsteer SAE folders under `run`, sorted (trainer checkpoints are not SAE folders)."""
    found = []
    for weights in sorted(run.rglob(WEIGHTS_NAME)):
        config = weights.parent / CONFIG_NAME
        if config.is_file() and _read_json(config).get("format") == FORMAT:
            found.append(weights.parent)
    return found


def find_stores(run: Path) -> dict[str, Path]:
    """Complete activation stores under `run`: site → directory (the first one, in path order)."""
    stores: dict[str, Path] = {}
    for meta in sorted(run.rglob(METADATA_FILE)):
        data = _read_json(meta)
        if "format_version" in data and "site" in data and data.get("complete"):
            stores.setdefault(str(data["site"]), meta.parent)
    return stores


def _same_path(recorded: str, target: Path, run: Path) -> bool:
    """Recorded paths may be relative to wherever the command ran: compare resolved paths, else whether the
    recorded one ends with the target's path inside the run (`layer2/train/saes/x`, not just `saes/x`)."""
    path = Path(recorded)
    if path.exists() and path.resolve() == target.resolve():
        return True
    inside = target.resolve().relative_to(run.resolve()).parts
    return len(path.parts) >= len(inside) and path.parts[len(path.parts) - len(inside):] == inside


def find_quality(run: Path, sae_dir: Path) -> Quality | None:
    """The evaluation (`EvalResult`) that names `sae_dir`, anywhere under the run, or None. Files named
    eval.json that do not read as an `EvalResult` (another tool's, or half-written) are passed over."""
    from clipsteer.evaluate.results import EvalResult

    for path in sorted(run.rglob(EvalResult.FILE)):
        if not EvalResult.done(path.parent):
            continue
        result = EvalResult.read(path.parent)
        if path.parent == sae_dir or _same_path(result.sae, sae_dir, run):
            return quality_of(result, path)
    return None


def quality_of(result: EvalResult, path: Path) -> Quality:
    from clipsteer.evaluate.results import FactorSummary

    r, f = result.reconstruction, result.factor_recovery
    density = result.density_histogram
    best = ({name: (int(v["best_feature"]), float(v["auroc"])) for name, v in f.image.get("factors", {}).items()}
            if f else {})
    return Quality(explained_variance=r.explained_variance, l0_patches=r.l0_patches, l0_cls=r.l0_cls,
                   dead_fraction=r.dead_fraction, source=f"{path} ({result.n_images} images of {result.dataset})",
                   ce_recovered_pct=result.downstream.ce_recovered_pct if result.downstream else None,
                   factor_auroc=FactorSummary.mean(f.image_auroc) if f and f.image_auroc else None,
                   factor_auroc_control=FactorSummary.mean(f.control_image_auroc) if f and f.control_image_auroc
                   else None,
                   density_edges=tuple(density.get("edges", ())), density_counts=tuple(density.get("counts", ())),
                   factor_best=best)


def read_concept_matches(directory: Path) -> tuple[dict[int, dict[str, float]], frozenset[int]]:
    """`concept_matches.json` of the layer sweep: feature → {factor: AUROC}, and the matched features."""
    path = directory / "concept_matches.json"
    if not path.is_file():
        return {}, frozenset()
    try:
        rows = _read_json(path).get("all", [])
        detected = {int(r["feature"]): {k: float(v) for k, v in r.get("detects", {}).items()} for r in rows}
        return detected, frozenset(int(r["feature"]) for r in rows if r.get("matches"))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: malformed concept-match row ({err}); rerun `clipsteer layer-sweep`") from err


def read_steering(directory: Path) -> Steering:
    """A `clipsteer steerability` output folder (`SteerabilitySummary` + feature rows per basis)."""
    from clipsteer.steer.results import SteerabilitySummary, read_feature_rows, rows_file


    summary = SteerabilitySummary.read(directory)
    config = summary.config
    rows = {b: tuple(read_feature_rows(directory, b))
            for b in summary.bases if rows_file(directory, b).is_file()}
    detected, matched = read_concept_matches(directory)
    try:
        vocabulary = config.get("vocabulary")
        return Steering(directory=directory, site=summary.site, alpha=float(config["alpha"]),
                        temperature=float(config["temperature"]), threshold=float(config["threshold"]),
                        tokens=str(config["tokens"]), images=str(config["images"]), n_images=int(config["n_images"]),
                        vocabulary=Path(vocabulary) if vocabulary else None, vocab_size=int(config["vocab_size"]),
                        n_words=summary.vocabulary_size,
                        fractions={b: s.fraction_steerable for b, s in summary.bases.items()}, rows=rows,
                        alpha_sweep={b: {float(a): f for a, f in by_alpha.items()}
                                     for b, by_alpha in summary.alpha_sweep.items()},
                        strength_curves={int(j): c for j, c in summary.strength_curves.items()},
                        detected_factors=detected, concept_matched=matched)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{directory / summary.FILE}: its config lacks {err}; expected the settings of "
                         f"`clipsteer steerability`") from err


def find_steering(run: Path, sae_dir: Path, site: str, n_saes_at_site: int) -> Path | None:
    """The steerability folder that scored `sae_dir`: named in its summary, or the only one at the site."""
    from clipsteer.steer.results import SteerabilitySummary

    by_site = []
    for path in sorted(run.rglob(SteerabilitySummary.FILE)):
        if not (path.parent / "features_sae.jsonl").is_file():
            continue
        summary = SteerabilitySummary.read(path.parent)
        recorded = summary.config.get("sae")
        if recorded and _same_path(str(recorded), sae_dir, run):
            return path.parent
        if summary.site == site:
            by_site.append(path.parent)
    return by_site[0] if len(by_site) == 1 and n_saes_at_site == 1 else None


def discover(run: str | Path) -> list[SAEEntry]:
    """Every SAE under the run directory, with its store, evaluation and steerability when found."""
    run = Path(run).expanduser()
    if not run.is_dir():
        raise RunDirectoryError(f"run directory not found: {run} (expected the --out folder of `clipsteer "
                                f"demo`, `layer-sweep`, or a folder holding SAEs and activation stores)")
    sae_dirs = find_saes(run)
    if not sae_dirs:
        raise RunDirectoryError(f"{run}: no clipsteer SAE folder (config.json + {WEIGHTS_NAME}) found under it")
    stores = find_stores(run)
    configs = {d: _read_json(d / CONFIG_NAME) for d in sae_dirs}
    sites = [str(c.get("site")) for c in configs.values()]
    entries = []
    for sae_dir, config in configs.items():
        site = str(config.get("site"))
        steer_dir = find_steering(run, sae_dir, site, sites.count(site))
        name = sae_dir.relative_to(run).as_posix()
        entries.append(SAEEntry(name=name, sae_dir=sae_dir, site=site, d_sae=int(config["d_sae"]),
                                architecture=str(config.get("architecture")), model=config.get("model"),
                                store_dir=stores.get(site), quality=find_quality(run, sae_dir),
                                steering=read_steering(steer_dir) if steer_dir else None))
    return entries


# ---------------------------------------------------------------- optional results (issues 9 and 10)
# Debiasing and typographic-defense results arrive with their commands. Each is read here, and only
# here, from the file its command writes: `result.json` holding {"features": [...], "before": {...},
# "after": {...}} with group reports {"wga", "avg", "groups": {name: accuracy}} (house-style
# `DebiasResult`), optionally "site", "per_layer" {layer: {metric: value}} and "controls".

def _group_result(path: Path, title: str) -> GroupResult:
    data = _read_json(path)
    try:
        before, after = data["before"], data["after"]
        metrics = {k: (float(before[k]), float(after[k])) for k in before
                   if k != "groups" and isinstance(before[k], int | float) and k in after}
        groups = {g: (float(before["groups"][g]), float(after["groups"][g])) for g in before.get("groups", {})
                  if g in after.get("groups", {})}
        per_layer = {int(layer): {k: float(v) for k, v in row.items()}
                     for layer, row in data.get("per_layer", {}).items()}
        controls = {name: {k: float(v) for k, v in c.items() if isinstance(v, int | float)}
                    for name, c in data.get("controls", {}).items()}
        return GroupResult(title=title, metrics=metrics, groups=groups,
                           removed_features=tuple(int(j) for j in data["features"]), site=data.get("site"),
                           per_layer=per_layer, controls=controls)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: missing or malformed field {err}; expected features, before and after") from err


def read_suppression_results(run: Path) -> list[GroupResult]:
    """Debiasing results (`debias*/**/result.json`) and typographic ones (`typographic*/**/result.json`)."""
    results = []
    for kind, title in (("debias", "Debiasing"), ("typographic", "Typographic defense")):
        for path in sorted(run.glob(f"{kind}*/**/result.json")):
            label = path.parent.relative_to(run).as_posix()
            results.append(_group_result(path, f"{title}: {label}"))
    return results
