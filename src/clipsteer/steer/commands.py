"""`clipsteer steerability`: score every feature of an SAE (and neurons, and a random-weights control).

Writes to `out/`: `features_<basis>.jsonl` and `.csv` (one `FeatureRow` per feature: index, S, P, top
concept, steerable) and, last, `summary.json` (`SteerabilitySummary`: per basis the fraction steerable,
distinct concepts among steerable features, the most common concepts; the α sweep and strength curves
when asked for). Read them with `steer.results.read_feature_rows` and `SteerabilitySummary.read`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from clipsteer.data.resolve import open_dataset
from clipsteer.errors import ConfigError, check_positive
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.models.sites import TokenSelection
from clipsteer.results import to_json
from clipsteer.run_folder import RunFolder, folder_lock
from clipsteer.steer.control import random_vision_like
from clipsteer.steer.dictionary import DirectionSet, LinearDictionary
from clipsteer.steer.results import (
    BasisSummary,
    FeatureRow,
    SteerabilitySummary,
    StrengthCurve,
    write_feature_rows,
)
from clipsteer.steer.steerability import Engine, SteeringRun, SteeringScores, SteeringSpec
from clipsteer.steer.vocabulary import read_word_list, text_embeddings, vocabulary_from_tokenizer

Basis = Literal["sae", "neurons"]


@dataclass(frozen=True)
class SteerabilityConfig:
    out: Path = Path("runs/steerability")
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
    pairs_per_forward: int = 256
    """Rows per forward when resuming from the site (feature × image pairs are stacked)."""
    device: str = "cpu"
    seed: int = 0


def load_images(backbone: Backbone, spec: str, n: int) -> torch.Tensor:
    dataset = open_dataset(spec)
    if len(dataset) < n:
        raise ValueError(f"{spec!r} holds {len(dataset)} images; steering needs n_images = {n}")
    return backbone.pixels([dataset.load(i) for i in range(n)])


def feature_rows(scores: SteeringScores, words: list[str], threshold: float) -> list[FeatureRow]:
    return [FeatureRow(feature=int(j), steerability=float(s), power=float(p), top_concept=words[int(t)],
                       steerable=bool(s > threshold))
            for j, s, p, t in zip(scores.features, scores.steerability, scores.power, scores.top_concept, strict=True)]


def steerability(config: SteerabilityConfig) -> SteerabilitySummary:
    """Score the bases into `out` under the run-folder protocol: `out` is locked and created before any
    work, a rerun with another config removes the previous run's files first, and summary.json is
    written last, atomically (its absence marks an incomplete folder)."""
    check_positive(config, ("n_images", "vocab_size", "pairs_per_forward", "max_features", "temperature"))
    if config.threshold < 0:
        raise ConfigError(f"--threshold must be ≥ 0, got {config.threshold}")
    run_config = to_json(config)
    with folder_lock(config.out, "steerability"):
        run = RunFolder(config.out, "steerability", run_config, SteerabilitySummary.FILE)
        run.begin()
        summary = _steerability(config, run, run_config)
        summary.write(config.out)
        run.finish()
    return summary


def _steerability(config: SteerabilityConfig, folder: RunFolder, run_config: dict) -> SteerabilitySummary:
    torch.manual_seed(config.seed)
    backbone = Backbone.from_pretrained(resolve_model(config.model), device=config.device)
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
    bases: dict[str, BasisSummary] = {}
    alpha_sweep: dict[str, dict[str, float]] = {}
    curves: dict[str, StrengthCurve] = {}
    for prefix, model in models.items():
        for basis, dictionary in dictionaries(model).items():
            n = dictionary.n_features
            subsample = basis == "sae" and config.max_features is not None and config.max_features < n
            features = (torch.linspace(0, n - 1, config.max_features).round().long().unique() if subsample
                        else torch.arange(n))
            print(f"[steerability] {prefix}{basis}: {len(features)} features at {site}")
            run = SteeringRun(model, site, dictionary, pixels, text, spec, image_batch=config.pairs_per_forward)
            scores = run.scores(features, engine=config.engine)
            rows = feature_rows(scores, words, config.threshold)
            name = prefix + basis
            folder.wrote(*write_feature_rows(rows, out, name))
            bases[name] = BasisSummary.of(rows)
            print(f"[steerability] {name}: {bases[name].fraction_steerable:.3f} steerable, "
                  f"{bases[name].distinct_concepts} distinct concepts")
            if config.alpha_sweep:
                alpha_sweep[name] = {
                    str(alpha): float(run.scores(features, engine=config.engine, alpha=alpha, progress=False)
                                      .steerable(config.threshold).float().mean())
                    for alpha in config.alpha_sweep}
                print(f"[steerability] {name}: fraction steerable by α {alpha_sweep[name]}")
            if name == "sae" and config.curve_features:
                curves = strength_curves(run, config.curve_features, config.curve_alphas, config.engine)
    summary = SteerabilitySummary(site=site, vocabulary_size=len(words), bases=bases, alpha_sweep=alpha_sweep,
                                  strength_curves=curves, config=run_config)
    return summary


def strength_curves(run: SteeringRun, features: tuple[int, ...], alphas: tuple[float, ...],
                    engine: Engine) -> dict[str, StrengthCurve]:
    """S and P of chosen features at each α (the paper's curves used α ∈ {−20, −5, 0, 5, 10, 20, 50, 150})."""
    per_alpha = [run.scores(list(features), engine=engine, alpha=alpha, progress=False) for alpha in alphas]
    return {str(j): StrengthCurve(alpha=tuple(alphas),
                                  steerability=tuple(float(scores.steerability[i]) for scores in per_alpha),
                                  power=tuple(float(scores.power[i]) for scores in per_alpha))
            for i, j in enumerate(features)}
