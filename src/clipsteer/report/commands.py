"""`clipsteer report RUN_DIR`: a static HTML report of a run, with a feature browser.

Reads the run through `report.sources` (every SAE under RUN_DIR, its activation store, evaluation and
steerability), makes one pass over each SAE's store for its feature cards (`report.cards`), draws the
pictures (`report.images`, `report.plots`), runs one before/after steering example per card when the
run has steerability results, and writes `RUN_DIR/report/` (index.html, features/*.html, img/,
cards.json) in one atomic swap. Open index.html in a browser; no server is needed.

torch and matplotlib are imported inside the functions, so that `clipsteer report --help` stays light.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import tyro

if TYPE_CHECKING:
    from clipsteer.data.protocol import ImageDataset
    from clipsteer.models.backbone import Backbone
    from clipsteer.report.cards import CardPass, FeatureCard
    from clipsteer.report.render import CardView, Figure, SectionView, TopImage
    from clipsteer.report.sources import GroupResult, Quality, SAEEntry
    from clipsteer.report.steering import ProbeSteering
    from clipsteer.sae.model import SparseAutoencoder


@dataclass(frozen=True)
class ReportConfig:
    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """A run directory: the --out folder of `clipsteer demo` / `layer-sweep`, or any folder holding SAEs and
    the activation stores they were trained on."""
    out: Path | None = None
    """Report folder; default: RUN/report."""
    model: str | None = None
    """CLIP checkpoint for the steering examples; default: the model recorded in the activation store."""
    dataset: str | None = None
    """Images of the store (for thumbnails); default: the dataset recorded in the store (must still match)."""
    cards_per_sae: int = 48
    """Feature cards per SAE: suppressed features and those with strength curves, then the most steerable
    scored ones, then evenly spaced ones."""
    top_images: int = 8
    """Top-activating images per card."""
    thumbnail_size: int = 128
    """Side of each thumbnail and heat map, in pixels."""
    steering_examples: bool = True
    """One before/after steering example per card (needs the model; only for SAEs with steerability results)."""
    tokens_per_batch: int = 8192
    """Store rows encoded at once in the card pass (memory: tokens × SAE features floats)."""
    device: str = "cpu"
    """Device for the SAE and the model (cpu, cuda, ...)."""
    progress: bool = True
    """Show progress bars."""


def slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "sae"


class Assets:
    """Files of the report folder being built: pictures under img/, pages, all relative to `root`."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, relative: str, data: bytes | str) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return relative


def quality_from_pass(card_pass: CardPass, store_dir: Path) -> Quality:
    """Reconstruction numbers of the card pass, for SAEs that have no eval.json."""
    import torch

    from clipsteer.evaluate.reconstruction import density_histogram
    from clipsteer.report.sources import Quality

    r = card_pass.reconstruction
    hist = density_histogram(torch.as_tensor(card_pass.frequencies))
    return Quality(explained_variance=float(r["explained_variance"]), l0_patches=r["l0_patches"], l0_cls=r["l0_cls"],
                   dead_fraction=float(r["dead_fraction"]),
                   source=f"the report's pass over {card_pass.n_images} images of {store_dir} (no eval.json found)",
                   density_edges=tuple(hist["edges"]), density_counts=tuple(hist["counts"]))


def annotate(card: FeatureCard, entry: SAEEntry, quality: Quality | None) -> FeatureCard:
    """Attach the steerability row and the ground-truth factors (when the run has them) to a card."""
    extra: dict = {}
    steering = entry.steering
    row = next((r for r in steering.rows.get("sae", ()) if r.feature == card.feature), None) if steering else None
    if row is not None:
        extra |= {"steerability": row.steerability, "power": row.power, "top_concept": row.top_concept,
                  "steerable": row.steerable}
    factors = dict(steering.detected_factors.get(card.feature, {})) if steering else {}
    if quality is not None:
        factors |= {f: auroc for f, (best, auroc) in quality.factor_best.items() if best == card.feature}
    matched = steering is not None and card.feature in steering.concept_matched
    return dataclasses.replace(card, factor_aurocs=factors, concept_matches_factor=matched, **extra)


def open_store_dataset(spec_dataset: str, fingerprint: str, override: str | None, store_dir: Path,
                       model: str) -> ImageDataset:
    """The store's images as `harvest` opened them: matched to the store's model (`ModelMatched`, the default) or
    as named (`--no-match-dataset-to-model`), whichever has the store's fingerprint; refuses a dataset whose
    fingerprint differs (thumbnails would show other images)."""
    from clipsteer.data.protocol import ModelMatched
    from clipsteer.data.resolve import open_dataset
    from clipsteer.models.loading import CheckpointError, resolve_checkpoint_dir

    name = override or spec_dataset
    try:
        dataset = open_dataset(name)
    except (FileNotFoundError, ValueError) as err:
        raise FileNotFoundError(f"{store_dir}: cannot open the images it was harvested from ({err}); pass "
                                f"--dataset with their location") from err
    if isinstance(dataset, ModelMatched) and dataset.fingerprint() != fingerprint:
        try:
            matched = dataset.for_model(resolve_checkpoint_dir(model))
        except (CheckpointError, OSError):
            matched = dataset  # the model is out of reach: the check below refuses the images as named
        dataset = matched if matched.fingerprint() == fingerprint else dataset
    if dataset.fingerprint() != fingerprint:
        raise ValueError(f"{store_dir} was harvested from a dataset with fingerprint {fingerprint}, but {name!r} "
                         f"has {dataset.fingerprint()}; pass --dataset with the images the store was built from")
    return dataset


def card_images(card: FeatureCard, dataset: ImageDataset, assets: Assets, prefix: str, side: int
                ) -> tuple[TopImage, ...]:
    from clipsteer.data.protocol import image_name
    from clipsteer.report.images import heatmap_overlay, png_bytes, square_thumbnail
    from clipsteer.report.render import TopImage

    shown = []
    for rank, (index, value) in enumerate(zip(card.top_images, card.top_values, strict=True)):
        image = dataset.load(index)
        src = assets.write(f"{prefix}_{rank}.png", png_bytes(square_thumbnail(image, side)))
        heat = (assets.write(f"{prefix}_{rank}_heat.png", png_bytes(heatmap_overlay(image, card.patch_maps[rank], side)))
                if card.patch_maps else None)
        shown.append(TopImage(image_name(dataset, index), value, src, heat))
    return tuple(shown)


def probe_steering(entry: SAEEntry, backbone: Backbone, sae: SparseAutoencoder, assets: Assets, slug: str,
                   side: int) -> tuple[ProbeSteering, str]:
    """A ProbeSteering on the first image the steerability run steered, and that image's thumbnail."""
    from clipsteer.data.resolve import open_dataset
    from clipsteer.report.images import png_bytes, square_thumbnail
    from clipsteer.report.steering import ProbeSteering
    from clipsteer.steer.vocabulary import read_vocabulary_file, text_embeddings

    steering = entry.steering
    assert steering is not None
    words = read_vocabulary_file(steering.vocabulary).concepts
    text = text_embeddings(backbone, words, cache_dir=steering.directory / "cache")
    image = open_dataset(steering.images, model_dir=backbone.model_dir).load(0)
    probe = ProbeSteering(backbone, sae, entry.site, backbone.pixels([image]), words, text, steering.alpha,
                          steering.tokens, steering.temperature)
    return probe, assets.write(f"img/{slug}/probe.png", png_bytes(square_thumbnail(image, side)))


def build_section(entry: SAEEntry, label: str, slug: str, required: list[int], config: ReportConfig,
                  assets: Assets, backbones: dict[str, Backbone]) -> tuple[SectionView, list[CardView]]:
    """Cards, pictures and steering examples of one SAE."""
    from clipsteer.activations.loaders import open_ordered
    from clipsteer.models.backbone import Backbone
    from clipsteer.report.cards import choose_features, collect_cards
    from clipsteer.report.render import CardView, SectionView
    from clipsteer.sae.loading import load_any_sae

    if entry.store_dir is None:
        note = f"No complete activation store for {entry.site} under the run: no feature cards for this SAE."
        return SectionView(slug, label, entry, entry.quality, 0, config.model or "", (note,)), []
    sae = load_any_sae(entry.sae_dir, device=config.device).eval()
    loader = open_ordered(entry.store_dir, tokens=_store_tokens(entry.store_dir))
    scored = [(r.feature, r.steerability) for r in entry.steering.rows.get("sae", ())] if entry.steering else []
    features = choose_features(sae.d_sae, scored, required, config.cards_per_sae)
    card_pass = collect_cards(sae, loader, features, config.top_images, config.tokens_per_batch, config.device,
                              config.progress)
    quality = entry.quality or quality_from_pass(card_pass, entry.store_dir)
    spec = loader.store.meta.spec
    model = config.model or spec.model_name
    dataset = open_store_dataset(spec.dataset, spec.dataset_fingerprint, config.dataset, entry.store_dir, model)
    probe, probe_src, notes = None, None, []
    if config.steering_examples and entry.steering is not None:
        if model not in backbones:
            backbones[model] = Backbone.from_pretrained(model, device=config.device)
        probe, probe_src = probe_steering(entry, backbones[model], sae, assets, slug, config.thumbnail_size)
    elif entry.steering is None:
        notes.append("No steerability results for this SAE: cards show activations only.")
    from tqdm.auto import tqdm

    views = []
    for card in tqdm(card_pass.cards, desc=f"{label}: pictures and steering", disable=not config.progress,
                     leave=False):
        card = annotate(card, entry, quality)
        images = card_images(card, dataset, assets, f"img/{slug}/f{card.feature}", config.thumbnail_size)
        example = probe.example(card.feature) if probe is not None else None
        views.append(CardView(slug, label, card, images, f"features/{slug}-{card.feature}.html", example, probe_src))
    return SectionView(slug, label, entry, quality, card_pass.n_images, model, tuple(notes)), views


def _store_tokens(store_dir: Path) -> str:
    from clipsteer.activations.store import ActivationStore

    return ActivationStore.open(store_dir).meta.spec.tokens


def section_label(entry: SAEEntry, entries: list[SAEEntry]) -> str:
    same_site = sum(e.site == entry.site for e in entries)
    base = f"layer {entry.layer}" if entry.layer is not None else entry.site
    return base if same_site == 1 else f"{base} · {entry.sae_dir.name}"


def figures(sections: list[SectionView], assets: Assets) -> tuple[list[Figure], list[Figure]]:
    """Quality figures and steerability figures of the index page."""
    from clipsteer.report import plots
    from clipsteer.report.render import Figure

    quality, steering = [], []
    with_quality = [s for s in sections if s.quality is not None]
    if with_quality:
        src = assets.write("img/quality.png", plots.quality_plot([s.label for s in with_quality],
                                                                 [s.quality for s in with_quality]))
        quality.append(Figure(src, "L0 per token on CLS vs patch tokens, explained variance, dead fraction and "
                                   "CE recovered, per SAE."))
    for s in with_quality:
        q = s.quality
        if q.density_edges:
            dead = round(q.dead_fraction * s.entry.d_sae)
            src = assets.write(f"img/{s.slug}/density.png",
                               plots.density_plot(q.density_edges, q.density_counts, dead, s.label))
            quality.append(Figure(src, f"Firing frequency of the features of {s.label}."))
    steered = [s for s in sections if s.entry.steering is not None]
    if steered:
        src = assets.write("img/steerable_fraction.png", plots.fraction_plot([s.label for s in steered],
                                                                             [s.entry.steering for s in steered]))
        steering.append(Figure(src, "Fraction of features that steer CLIP (S above threshold): SAE features, random "
                                    "directions of the same scaling and clamp (the null), and single neurons."))
    for s in steered:
        st = s.entry.steering
        if any(st.rows.values()):
            src = assets.write(f"img/{s.slug}/steerability_hist.png", plots.steerability_histogram(st, s.label))
            steering.append(Figure(src, f"Distribution of steerability S per basis, {s.label}."))
        if st.alpha_sweep:
            src = assets.write(f"img/{s.slug}/alpha_sweep.png", plots.alpha_sweep_plot(st, s.label))
            steering.append(Figure(src, f"Fraction steerable against the clamp value α, {s.label}."))
        if st.strength_curves:
            src = assets.write(f"img/{s.slug}/strength_curves.png", plots.strength_curve_plot(st.strength_curves,
                                                                                              s.label))
            steering.append(Figure(src, f"Strength curves (S and P against α) of chosen features, {s.label}."))
    return quality, steering


def group_figures(results: list[GroupResult], assets: Assets) -> list[tuple[GroupResult, Figure]]:
    from clipsteer.report import plots
    from clipsteer.report.render import Figure

    return [(r, Figure(assets.write(f"img/suppression_{i}.png", plots.group_plot(r)),
                       f"{r.title}: accuracy per group before and after suppressing the selected features."))
            for i, r in enumerate(results)]


def report(config: ReportConfig) -> Path:
    """Build the report folder and return the path of its index.html."""
    from clipsteer.atomic import atomic_directory
    from clipsteer.report import plots, render
    from clipsteer.report.sources import discover, read_suppression_results

    run = Path(config.run).expanduser()
    entries = discover(run)
    results = read_suppression_results(run)
    out = Path(config.out) if config.out is not None else run / "report"
    backbones: dict = {}
    with atomic_directory(out) as tmp:
        assets = Assets(tmp)
        sections, cards = [], []
        for entry in entries:
            label = section_label(entry, entries)
            required = [j for r in results if r.site == entry.site for j in r.removed_features]
            required += list(entry.steering.strength_curves) if entry.steering else []
            section, views = build_section(entry, label, slugify(label), required, config, assets, backbones)
            sections.append(section)
            cards += views
            print(f"[report] {label}: {len(views)} feature cards")
        quality_figs, steering_figs = figures(sections, assets)
        models = sorted({s.model for s in sections if s.model})
        view = render.ReportView(title=f"clipsteer report · {run.name}", run=str(run), model=", ".join(models),
                                 sections=tuple(sections), cards=tuple(cards), quality_figures=tuple(quality_figs),
                                 steering_figures=tuple(steering_figs), groups=tuple(group_figures(results, assets)),
                                 card_pages={(c.section, c.card.feature): c.page for c in cards})
        steering_of = {s.slug: s.entry.steering for s in sections}
        for card in cards:
            steering, j = steering_of[card.section], card.card.feature
            curve = steering.strength_curves.get(j) if steering else None
            curve_src = (assets.write(f"img/{card.section}/curve_{j}.png",
                                      plots.strength_curve_plot({j: curve}, f"feature #{j}")) if curve else None)
            assets.write(card.page, render.feature_html(card, curve_src))
        assets.write("index.html", render.index_html(view))
        assets.write("cards.json", render.manifest(view))
    index = out / "index.html"
    print(f"[report] wrote {index} ({len(cards)} feature cards); open it in a browser")
    return index
