"""`clipsteer steerability`: score every feature of an SAE (and neurons, and a random-weights control).

Writes to `out/`: `features_<basis>.jsonl` and `.csv` (one row per feature: index, S, P, top concept,
steerable) and `summary.json` (per basis: fraction steerable, distinct concepts among steerable
features, the most common concepts), plus `strength_curves.json` when `curve_features` is given.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from clipsteer.atomic import atomic_write_json, atomic_write_text
from clipsteer.data.resolve import open_dataset
from clipsteer.errors import ConfigError, check_positive
from clipsteer.models.backbone import Backbone, TokenSelection
from clipsteer.run_folder import RunFolder, folder_lock
from clipsteer.steer.control import random_vision_like
from clipsteer.steer.dictionary import DirectionSet, LinearDictionary
from clipsteer.steer.steerability import Engine, SteeringRun, SteeringScores, SteeringSpec
from clipsteer.steer.vocabulary import read_word_list, text_embeddings, vocabulary_from_tokenizer
from clipsteer.world.paths import shipped_toy_clip

Basis = Literal["sae", "neurons"]


@dataclass(frozen=True)
class SteerabilityConfig:
    out: Path
    """Output directory."""
    sae: Path | None = None
    """An SAE (clipsteer, SAELens or Prisma format). Without it only neurons are scored."""
    model: str | None = None
    """CLIP checkpoint; default: the shipped toy CLIP."""
    site: str | None = None
    """Hook site; default: the SAE's own site."""
    images: str = "world:zero_shot/test"
    """Image source: an image folder or `world:<split>`; the first `n_images` are used."""
    n_images: int = 192
    vocabulary: Path | None = None
    """A word list (one per line); default: whole words from the model's tokenizer."""
    vocab_size: int = 5000
    alpha: float = 150.0
    tokens: TokenSelection = "all"
    temperature: float = 100.0
    threshold: float = 0.10
    bases: tuple[Basis, ...] = ("sae", "neurons")
    random_control: bool = True
    """Also score the same bases in a model with random vision weights (the trained text tower kept)."""
    max_features: int | None = None
    """Score only an evenly spaced subset of this many SAE features (default: all; neurons: always all)."""
    alpha_sweep: tuple[float, ...] = ()
    """Also report the fraction steerable of every basis at each of these α (the clean pass is shared)."""
    curve_features: tuple[int, ...] = ()
    """SAE features whose strength curve (S and P over `curve_alphas`) is recorded."""
    curve_alphas: tuple[float, ...] = (-20.0, -5.0, 0.0, 5.0, 10.0, 20.0, 50.0, 150.0)
    engine: Engine = "auto"
    batch_size: int = 256
    """Rows per forward when resuming from the site (feature × image pairs are stacked)."""
    device: str = "cpu"
    seed: int = 0


def load_images(backbone: Backbone, spec: str, n: int) -> torch.Tensor:
    dataset = open_dataset(spec)
    if len(dataset) < n:
        raise ValueError(f"{spec!r} holds {len(dataset)} images; steering needs n_images = {n}")
    return backbone.pixels([dataset.load(i) for i in range(n)])


def feature_rows(scores: SteeringScores, words: list[str], threshold: float) -> list[dict]:
    return [{"feature": int(j), "steerability": float(s), "power": float(p), "top_concept": words[int(t)],
             "steerable": bool(s > threshold)}
            for j, s, p, t in zip(scores.features, scores.steerability, scores.power, scores.top_concept, strict=True)]


def summarise(rows: list[dict]) -> dict:
    steerable = [r for r in rows if r["steerable"]]
    concepts = Counter(r["top_concept"] for r in steerable)
    return {"n_features": len(rows), "n_steerable": len(steerable),
            "fraction_steerable": len(steerable) / len(rows) if rows else 0.0,
            "distinct_concepts": len(concepts), "top_concepts": concepts.most_common(10)}


def write_rows(rows: list[dict], stem: Path) -> list[Path]:
    """Write `stem`.jsonl and `stem`.csv atomically; returns both paths."""
    atomic_write_text(stem.with_suffix(".jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(stem.with_suffix(".csv"), table.getvalue())
    return [stem.with_suffix(".jsonl"), stem.with_suffix(".csv")]


def steerability(config: SteerabilityConfig) -> dict:
    """Score the bases into `out` under the run-folder protocol: `out` is locked and created before any
    work, a rerun with another config removes the previous run's files first, and summary.json is
    written last, atomically (its absence marks an incomplete folder)."""
    check_positive(config, ("n_images", "vocab_size", "batch_size", "max_features", "temperature"))
    if config.threshold < 0:
        raise ConfigError(f"--threshold must be ≥ 0, got {config.threshold}")
    run_config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    run_config = json.loads(json.dumps(run_config))   # tuples → lists, as the record stores them
    with folder_lock(config.out, "steerability"):
        run = RunFolder(config.out, "steerability", run_config, "summary.json")
        run.begin()
        summary = _steerability(config, run)
        atomic_write_json(run.result_path, summary)
        run.finish()
    return summary


def _steerability(config: SteerabilityConfig, folder: RunFolder) -> dict:
    torch.manual_seed(config.seed)
    backbone = Backbone.from_pretrained(config.model or shipped_toy_clip(), device=config.device)
    sae_dictionary = None
    if config.sae is not None:
        from clipsteer.sae.loading import load_any_sae
        from clipsteer.steer.sae_adapter import SAEDictionary

        sae = load_any_sae(config.sae, device=config.device)
        sae_dictionary = SAEDictionary(sae)
    site = config.site or (sae_dictionary.sae.config.site if sae_dictionary else None)
    if site is None:
        raise ConfigError("steerability: give --site (the SAE's config records none, or no SAE was given)")
    words = (read_word_list(config.vocabulary, config.vocab_size) if config.vocabulary
             else vocabulary_from_tokenizer(backbone.tokenizer, config.vocab_size))
    out = Path(config.out)
    text = text_embeddings(backbone, words, cache_dir=out / "cache")
    pixels = load_images(backbone, config.images, config.n_images)
    spec = SteeringSpec(config.alpha, config.tokens, config.temperature, config.threshold)

    def dictionaries(model: Backbone) -> dict[str, LinearDictionary]:
        chosen: dict[str, LinearDictionary] = {}
        if "sae" in config.bases and sae_dictionary is not None:
            chosen["sae"] = sae_dictionary
        if "neurons" in config.bases:
            chosen["neurons"] = DirectionSet.neurons(model.d_model, device=model.device)
        return chosen

    models = {"": backbone}
    if config.random_control:
        models["random_"] = random_vision_like(backbone, seed=config.seed)
    summary: dict = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
                     "site": site, "vocabulary_size": len(words)}
    for prefix, model in models.items():
        for basis, dictionary in dictionaries(model).items():
            n = dictionary.n_features
            subsample = basis == "sae" and config.max_features is not None and config.max_features < n
            features = (torch.linspace(0, n - 1, config.max_features).round().long().unique() if subsample
                        else torch.arange(n))
            print(f"[steerability] {prefix}{basis}: {len(features)} features at {site}")
            run = SteeringRun(model, site, dictionary, pixels, text, spec, image_batch=config.batch_size)
            scores = run.scores(features, engine=config.engine)
            rows = feature_rows(scores, words, config.threshold)
            folder.wrote(*write_rows(rows, out / f"features_{prefix}{basis}"))
            summary[f"{prefix}{basis}"] = summarise(rows)
            print(f"[steerability] {prefix}{basis}: {summary[f'{prefix}{basis}']['fraction_steerable']:.3f} steerable, "
                  f"{summary[f'{prefix}{basis}']['distinct_concepts']} distinct concepts")
            if config.alpha_sweep:
                summary.setdefault("alpha_sweep", {})[f"{prefix}{basis}"] = {
                    str(alpha): float(run.scores(features, engine=config.engine, alpha=alpha, progress=False)
                                      .steerable(config.threshold).float().mean())
                    for alpha in config.alpha_sweep}
                print(f"[steerability] {prefix}{basis}: fraction steerable by α {summary['alpha_sweep'][f'{prefix}{basis}']}")
            if prefix == "" and basis == "sae" and config.curve_features:
                summary["strength_curves"] = strength_curves(run, config.curve_features, config.curve_alphas,
                                                             config.engine)
    return summary


def strength_curves(run: SteeringRun, features: tuple[int, ...], alphas: tuple[float, ...], engine: Engine) -> dict:
    """S and P of chosen features at each α (the paper's curves used α ∈ {−20, −5, 0, 5, 10, 20, 50, 150})."""
    curves = {j: {"alpha": list(alphas), "steerability": [], "power": []} for j in features}
    for alpha in alphas:
        scores = run.scores(list(features), engine=engine, alpha=alpha, progress=False)
        for j, s, p in zip(features, scores.steerability, scores.power, strict=True):
            curves[j]["steerability"].append(float(s))
            curves[j]["power"].append(float(p))
    return curves
