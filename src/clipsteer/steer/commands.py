"""`clipsteer steerability`: score every SAE feature, beside a null, neuron baselines and (optionally) a diagnostic.

Bases (`--bases`), all in the trained model at the same site with the same clamp:
- `sae`        the SAE's features (layer-normed units when the SAE normalises its input)        — the result
- `null`       an untrained SAE of the same config: random unit directions, same scaling/clamp — the null
- `neurons`    residual coordinates clamped in raw units (the paper's neuron baseline)          — baseline
- `neurons_ln` residual coordinates clamped in layer-normed units (the SAE's units)             — baseline
`--random-vision` adds `random_vision_sae` / `random_vision_neurons`: the same clamps in a model whose
vision tower is re-initialised — a labelled diagnostic, not a null (see `clipsteer.steer.control`).

Constants are translated by meaning (`clipsteer.steer.calibration`): τ defaults to the model's logit
scale and α to 5.42 × the layer-normed token norm; `--alpha 150 --temperature 100` are the paper's
numbers as is. The α sweep and the strength curves are given in the paper's units and scaled by α/150.
Where the vocabulary names ground-truth factors and `--match-images` has concept labels, each basis also
gets its concept match against the shuffled baseline (`clipsteer.steer.concept_match`).

Writes to `out/`: `features_<basis>.jsonl|.csv` (`FeatureRow`s), `vocabulary.txt` (the concepts, with
their factors), `concept_matches.json` (`ConceptMatches`, when matched), `strength_curves.png` (with
`--curve-features`) and, last, `summary.json` (`SteerabilitySummary`). Read them with
`steer.results.read_feature_rows`, `ConceptMatches.read` and `SteerabilitySummary.read`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipsteer.data.protocol import ConceptAnnotated
from clipsteer.data.resolve import open_dataset
from clipsteer.errors import ConfigError, check_positive
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.results import to_json
from clipsteer.run_folder import RunFolder, folder_lock
from clipsteer.steer.calibration import (
    SteeringConstants,
    steering_constants,
)
from clipsteer.steer.concept_match import concept_match, detected_factors, image_codes, labelled_activations
from clipsteer.steer.configs import DEFAULT_BASES, Engine, SteerabilityConfig
from clipsteer.steer.control import random_directions_like, random_vision_like
from clipsteer.steer.dictionary import DirectionSet, LayerNormedDirections, LinearDictionary
from clipsteer.steer.results import (
    BasisSummary,
    ConceptMatch,
    ConceptMatches,
    FeatureRow,
    Role,
    SteerabilitySummary,
    StrengthCurve,
    UnitMatch,
    null_warnings,
    write_feature_rows,
)
from clipsteer.steer.steerability import SteeringRun, SteeringScores, SteeringSpec
from clipsteer.steer.vocabulary import (
    ConceptVocabulary,
    open_vocabulary,
    text_embeddings,
    write_vocabulary_file,
)

ROLES: dict[str, tuple[Role, str]] = {
    "sae": ("result", "SAE features, clamped in the SAE's units"),
    "null": ("null", "random unit directions (an untrained SAE of the same config), same units and clamp"),
    "neurons": ("baseline", "residual coordinates clamped in raw units (the paper's neurons)"),
    "neurons_ln": ("baseline", "residual coordinates clamped in layer-normed units"),
    "random_vision_sae": ("diagnostic", "SAE features in a model with a re-initialised vision tower (not a null)"),
    "random_vision_neurons": ("diagnostic", "raw neurons in a model with a re-initialised vision tower (not a null)"),
}
VOCABULARY_FILE = "vocabulary.txt"



def load_images(backbone: Backbone, dataset: Any, spec: str, n: int) -> torch.Tensor:
    if len(dataset) < n:
        raise ValueError(f"--images {spec!r} holds {len(dataset)} images; steering needs --n-images {n}")
    return backbone.pixels([dataset.load(i) for i in range(n)])


def feature_rows(scores: SteeringScores, concepts: tuple[str, ...], threshold: float) -> list[FeatureRow]:
    return [FeatureRow(feature=int(j), steerability=float(s), power=float(p), top_concept=concepts[int(t)],
                       steerable=bool(s > threshold))
            for j, s, p, t in zip(scores.features, scores.steerability, scores.power, scores.top_concept, strict=True)]


def evenly_spaced(n: int, count: int | None) -> torch.Tensor:
    if count is None or count >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, count).round().long().unique()


def steerability(config: SteerabilityConfig) -> SteerabilitySummary:
    """Score the bases into `out` under the run-folder protocol: `out` is locked and created before any
    work, a rerun with another config removes the previous run's files first, and summary.json is
    written last, atomically (its absence marks an incomplete folder)."""
    check_positive(config, ("n_images", "vocab_size", "pairs_per_forward", "max_features", "null_features",
                            "temperature", "alpha", "relative_alpha", "match_n_images"))
    if config.threshold < 0:
        raise ConfigError(f"--threshold must be ≥ 0, got {config.threshold}")
    unknown = set(config.bases) - set(DEFAULT_BASES)
    if unknown:
        raise ConfigError(f"--bases: unknown {sorted(unknown)}; choose from {list(DEFAULT_BASES)}")
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
    sae = None
    if config.sae is not None:
        from clipsteer.sae.loading import load_any_sae

        sae = load_any_sae(config.sae, device=config.device)
    site = config.site or (sae.config.site if sae is not None else None)
    if site is None:
        raise ConfigError("steerability: give --site (the SAE's config records none, or no SAE was given)")
    parsed = backbone.site(site)
    if parsed.tower != "vision":
        raise ConfigError(f"steerability steers the vision tower; {parsed.name!r} is a text-tower site")
    site = parsed.name
    images = open_dataset(config.images, model_dir=backbone.model_dir)
    vocabulary = open_vocabulary(config.vocabulary, backbone, images, config.vocab_size, config.images)
    constants = steering_constants(backbone.d_model, backbone.logit_scale, config.alpha, config.relative_alpha,
                                   config.temperature)
    out = Path(config.out)
    write_vocabulary_file(vocabulary, out / VOCABULARY_FILE)
    folder.wrote(out / VOCABULARY_FILE)
    text = text_embeddings(backbone, vocabulary.concepts, cache_dir=out / "cache")
    pixels = load_images(backbone, images, config.images, config.n_images)
    spec = SteeringSpec(constants.alpha, config.tokens, constants.temperature, config.threshold)
    print(f"[steerability] {site}: α = {constants.alpha:.4g} ({constants.alpha_relative:.3g} × ‖x̃‖), "
          f"τ = {constants.temperature:.4g} (logit scale {constants.logit_scale:.4g}), |V| = {len(vocabulary)} "
          f"({vocabulary.source}), N = {config.n_images}")

    matcher = ConceptMatcher.create(config, vocabulary, site, backbone.model_dir)
    bases: dict[str, BasisSummary] = {}
    alpha_sweep: dict[str, dict[str, float]] = {}
    units: dict[str, tuple[UnitMatch, ...]] = {}
    curves: dict[str, StrengthCurve] = {}
    for name, (model, dictionary, features) in basis_plans(config, backbone, sae, site).items():
        print(f"[steerability] {name}: {len(features)} units at {site}")
        run = SteeringRun(model, site, dictionary, pixels, text, spec, image_batch=config.pairs_per_forward)
        rows = feature_rows(run.scores(features, engine=config.engine), vocabulary.concepts, config.threshold)
        folder.wrote(*write_feature_rows(rows, out, name))
        role, description = ROLES[name]
        match = None
        if matcher is not None and role != "diagnostic":
            units[name] = matcher.units(model, dictionary, rows)
            match = matcher.summary(units[name])
        bases[name] = BasisSummary.of(rows, role, description, match)
        print(f"[steerability] {name}: {bases[name].fraction_steerable:.3f} steerable "
              f"({bases[name].n_steerable}/{len(rows)}), {bases[name].distinct_concepts} distinct concepts"
              + (f"; concept match {match.rate:.2f} vs {match.shuffled_rate:.2f} shuffled" if match else ""))
        if config.alpha_sweep:
            alpha_sweep[name] = {
                f"{constants.translate(a):g}": float(
                    run.scores(features, engine=config.engine, alpha=constants.translate(a), progress=False)
                    .steerable(config.threshold).float().mean())
                for a in config.alpha_sweep}
            print(f"[steerability] {name}: fraction steerable by α {alpha_sweep[name]}")
        if name == "sae" and config.curve_features:
            curves = strength_curves(run, config.curve_features, config.curve_alphas, constants, config.engine)
    if units:
        folder.wrote(ConceptMatches(config.match_threshold, units).write(out))
    summary = SteerabilitySummary(
        site=site, vocabulary_size=len(vocabulary), bases=bases, model=backbone.name, images=config.images,
        n_images=config.n_images, vocabulary=vocabulary.source, alpha=constants.alpha,
        alpha_relative=constants.alpha_relative, temperature=constants.temperature,
        logit_scale=constants.logit_scale, threshold=config.threshold, tokens=config.tokens,
        warnings=null_warnings(bases), alpha_sweep=alpha_sweep, strength_curves=curves, config=run_config)
    for warning in summary.warnings:
        print(f"[steerability] WARNING: {warning}")
    if curves:
        from clipsteer.steer.plots import plot_strength_curves

        folder.wrote(plot_strength_curves(summary, out / "strength_curves.png"))
    return summary


def basis_plans(config: SteerabilityConfig, backbone: Backbone, sae: Any,
                site: str) -> dict[str, tuple[Backbone, LinearDictionary, torch.Tensor]]:
    """{basis name: (model, dictionary, feature indices)} in the order they are scored."""
    from clipsteer.sae.config import SAEConfig
    from clipsteer.steer.sae_adapter import SAEDictionary

    d = backbone.d_model
    plans: dict[str, tuple[Backbone, LinearDictionary, torch.Tensor]] = {}
    sae_features = None
    if sae is not None and "sae" in config.bases:
        sae_features = evenly_spaced(sae.d_sae, config.max_features)
        plans["sae"] = (backbone, SAEDictionary(sae), sae_features)
    if "null" in config.bases:
        null_config = sae.config if sae is not None else SAEConfig(d_in=d, d_sae=d, site=site)
        null = random_directions_like(null_config, seed=config.seed, device=config.device)
        count = config.null_features or (len(sae_features) if sae_features is not None else d)
        plans["null"] = (backbone, SAEDictionary(null), evenly_spaced(null.d_sae, count))
    if "neurons" in config.bases:
        plans["neurons"] = (backbone, DirectionSet.neurons(d, device=config.device), torch.arange(d))
    if "neurons_ln" in config.bases:
        plans["neurons_ln"] = (backbone, LayerNormedDirections.neurons(d, device=config.device), torch.arange(d))
    if config.random_vision:
        random_model = random_vision_like(backbone, seed=config.seed)
        if sae is not None:
            plans["random_vision_sae"] = (random_model, SAEDictionary(sae),
                                          evenly_spaced(sae.d_sae, config.max_features))
        plans["random_vision_neurons"] = (random_model, DirectionSet.neurons(d, device=config.device),
                                          torch.arange(d))
    if not plans:
        raise ConfigError("steerability: nothing to score (give --sae for the `sae` basis, or other --bases)")
    return plans


@dataclass
class ConceptMatcher:
    """Concept match of steerable units on labelled images (only when the vocabulary names factors)."""

    vocabulary: ConceptVocabulary
    dataset: ConceptAnnotated
    site: str
    n_images: int
    threshold: float
    seed: int
    _activations: dict[str, tuple[list[torch.Tensor], dict[str, torch.Tensor]]] = field(default_factory=dict)
    """Per model (name and revision): the labelled images' site activations, read once."""

    @classmethod
    def create(cls, config: SteerabilityConfig, vocabulary: ConceptVocabulary, site: str,
               model_dir: Path | None = None) -> ConceptMatcher | None:
        if vocabulary.factors is None:
            return None
        dataset = open_dataset(config.match_images, model_dir=model_dir)
        if not isinstance(dataset, ConceptAnnotated):
            print(f"[steerability] concept match skipped: {config.match_images!r} has no concept labels")
            return None
        return cls(vocabulary, dataset, site, config.match_n_images, config.match_threshold, config.seed)

    def units(self, model: Backbone, dictionary: LinearDictionary, rows: list[FeatureRow]) -> tuple[UnitMatch, ...]:
        """Each steerable unit's detected factors and the ones its top concept names."""
        steerable = [r for r in rows if r.steerable]
        if not steerable:
            return ()
        key = f"{model.name}@{model.revision}"
        if key not in self._activations:
            self._activations[key] = labelled_activations(model, self.site, self.dataset, self.n_images)
        acts, labels = self._activations[key]
        features = torch.tensor([r.feature for r in steerable])
        detected = detected_factors(image_codes(acts, dictionary, features), labels, self.threshold)
        names = self._factors_of()
        return tuple(UnitMatch(r.feature, r.top_concept, d, tuple(sorted(names[r.top_concept] & set(d))))
                     for r, d in zip(steerable, detected, strict=True))

    def summary(self, units: tuple[UnitMatch, ...]) -> ConceptMatch:
        index = {c: i for i, c in enumerate(self.vocabulary.concepts)}
        assert self.vocabulary.factors is not None
        return concept_match([index[u.top_concept] for u in units], [u.detects for u in units],
                             self.vocabulary.factors, seed=self.seed)

    def _factors_of(self) -> dict[str, frozenset[str]]:
        assert self.vocabulary.factors is not None
        return dict(zip(self.vocabulary.concepts, self.vocabulary.factors, strict=True))


def strength_curves(run: SteeringRun, features: tuple[int, ...], paper_alphas: tuple[float, ...],
                    constants: SteeringConstants, engine: Engine) -> dict[str, StrengthCurve]:
    """S and P of chosen features at each α (the paper's curves: α ∈ {−20, −5, 0, 5, 10, 20, 50, 150}, in its units)."""
    alphas = tuple(constants.translate(a) for a in paper_alphas)
    per_alpha = [run.scores(list(features), engine=engine, alpha=a, progress=False) for a in alphas]
    return {str(j): StrengthCurve(alpha=alphas, steerability=tuple(float(s.steerability[i]) for s in per_alpha),
                                  power=tuple(float(s.power[i]) for s in per_alpha), paper_alpha=tuple(paper_alphas))
            for i, j in enumerate(features)}
