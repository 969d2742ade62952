"""What the report reads from a run directory, in one place: discovery and the views the pages need.

The report never parses another package's files anywhere else. Each reader below turns one output
into a small typed view; when a package gains its own typed reader (`EvalResult`, `SteerabilitySummary`,
the debias / typographic results), only the function that reads that file changes.

A run directory is searched, not assumed: every clipsteer SAE folder under it (`config.json` with
`"format": "clipsteer-sae"` + `sae.safetensors`) is one entry. Its activation store is the complete
store under the run with the SAE's site; its evaluation is `eval.json` in the SAE folder; its
steerability is the folder whose `summary.json` names that SAE (or, failing that, the only one at its
site). Optional results (debiasing, typographic defense) are shown when their files exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from clipsteer.activations.format import METADATA_FILE
from clipsteer.sae.io import CONFIG_NAME, FORMAT, WEIGHTS_NAME


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
class FeatureScore:
    feature: int
    steerability: float
    power: float
    top_concept: str
    steerable: bool


@dataclass(frozen=True)
class StrengthCurve:
    alphas: tuple[float, ...]
    steerability: tuple[float, ...]
    power: tuple[float, ...]


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
    rows: dict[str, tuple[FeatureScore, ...]]
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


def read_quality(sae_dir: Path) -> Quality | None:
    """`eval.json` in the SAE folder (written by `clipsteer eval`), or None."""
    path = sae_dir / "eval.json"
    if not path.is_file():
        return None
    data = _read_json(path)
    try:
        rec = data["reconstruction"]
        down = data.get("downstream", {})
        fac = data.get("factor_recovery", {})
        control = fac.get("untrained_control_image_mean_auroc_by_group", {})
        groups = [g for g in ("shape", "colour", "background") if g in control]
        density = data.get("density_histogram", {})
        best = {name: (int(v["best_feature"]), float(v["auroc"]))
                for name, v in fac.get("image", {}).get("factors", {}).items()}
        return Quality(explained_variance=float(rec["explained_variance"]), l0_patches=rec.get("l0_patches"),
                       l0_cls=rec.get("l0_cls"), dead_fraction=float(rec["dead_fraction"]), source=str(path),
                       ce_recovered_pct=down.get("ce_recovered_pct"),
                       factor_auroc=fac.get("image_mean_auroc_shape_colour_background"),
                       factor_auroc_control=sum(control[g] for g in groups) / len(groups) if groups else None,
                       density_edges=tuple(density.get("edges", ())), density_counts=tuple(density.get("counts", ())),
                       factor_best=best)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: missing or malformed field {err}; expected the output of `clipsteer eval`") from err


def _read_rows(path: Path) -> tuple[FeatureScore, ...]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
                rows.append(FeatureScore(int(r["feature"]), float(r["steerability"]), float(r["power"]),
                                         str(r["top_concept"]), bool(r["steerable"])))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{n}: expected a steerability row "
                                 f"(feature, steerability, power, top_concept, steerable): {err}") from err
    return tuple(rows)


def read_steering(directory: Path) -> Steering:
    """A `clipsteer steerability` output folder (summary.json + features_<basis>.jsonl)."""
    summary_path = directory / "summary.json"
    data = _read_json(summary_path)
    try:
        config = data["config"]
        bases = [b for b in ("sae", "neurons", "random_sae", "random_neurons") if b in data]
        rows = {b: _read_rows(directory / f"features_{b}.jsonl") for b in bases
                if (directory / f"features_{b}.jsonl").is_file()}
        curves = {int(j): StrengthCurve(tuple(c["alpha"]), tuple(c["steerability"]), tuple(c["power"]))
                  for j, c in data.get("strength_curves", {}).items()}
        sweep = {basis: {float(a): float(f) for a, f in by_alpha.items()}
                 for basis, by_alpha in data.get("alpha_sweep", {}).items()}
        detected: dict[int, dict[str, float]] = {}
        matched: set[int] = set()
        match_path = directory / "concept_matches.json"
        if match_path.is_file():
            for r in _read_json(match_path).get("all", []):
                detected[int(r["feature"])] = {k: float(v) for k, v in r.get("detects", {}).items()}
                if r.get("matches"):
                    matched.add(int(r["feature"]))
        vocabulary = config.get("vocabulary")
        return Steering(directory=directory, site=str(data["site"]), alpha=float(config["alpha"]),
                        temperature=float(config["temperature"]), threshold=float(config["threshold"]),
                        tokens=str(config["tokens"]), images=str(config["images"]), n_images=int(config["n_images"]),
                        vocabulary=Path(vocabulary) if vocabulary not in (None, "None") else None,
                        vocab_size=int(config["vocab_size"]),
                        n_words=int(data.get("vocabulary_size", config["vocab_size"])),
                        fractions={b: float(data[b]["fraction_steerable"]) for b in bases}, rows=rows,
                        alpha_sweep=sweep, strength_curves=curves, detected_factors=detected,
                        concept_matched=frozenset(matched))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{summary_path}: missing or malformed field {err}; expected the output of "
                         f"`clipsteer steerability`") from err


def find_steering(run: Path, sae_dir: Path, site: str, n_saes_at_site: int) -> Path | None:
    """The steerability folder that scored `sae_dir`: named in its summary, or the only one at the site."""
    by_site = []
    for summary in sorted(run.rglob("summary.json")):
        if not (summary.parent / "features_sae.jsonl").is_file():
            continue
        data = _read_json(summary)
        recorded = str(data.get("config", {}).get("sae"))
        if recorded not in ("None", "") and _same_path(recorded, sae_dir, run):
            return summary.parent
        if data.get("site") == site:
            by_site.append(summary.parent)
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
                                store_dir=stores.get(site), quality=read_quality(sae_dir),
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
