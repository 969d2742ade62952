"""Configs of the experiment commands (debias, typographic-defense), importable without torch (instant
`--help`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clipsteer.activations.configs import HarvestConfig
from clipsteer.evaluate.configs import EvalConfig
from clipsteer.models.sites import TokenSelection
from clipsteer.sae.configs import TrainConfig
from clipsteer.sae.recipe import ObjectiveConfig, TrainerConfig
from clipsteer.steer.configs import SteerabilityConfig
from clipsteer.steer.edit_kinds import Form

SuppressOp = Literal["ablate", "mean_ablate"]
DebiasControl = Literal["random", "neurons", "orth_proj"]
TypographicControl = Literal["random", "neurons"]


@dataclass(frozen=True)
class FeatureSelection:
    n_features: tuple[int, ...] = (4, 16, 64, 256, 1024)
    """Candidate k (how many top-ranked features to suppress); k is chosen on the validation split. On the
    toy (2048 features) the choice was 16–1024 depending on task and layer: up to half the dictionary."""
    tokens: tuple[TokenSelection, ...] = ("all", "patches", "cls")
    """Candidate tokens to suppress on (also the tokens whose max gives an image's feature score). At the
    last block only the CLS row reaches the embedding, so there features must be ranked by their CLS code:
    on the toy's background task at blocks.3 (1000 images, TopK ×16), ranking by CLS lifts worst-group
    accuracy on val from 63.2 to 74.4 (k 256) against ranking by the max over all tokens."""
    op: SuppressOp = "ablate"
    """ablate: set the codes to 0; mean_ablate: to their mean over the selection split's tokens."""
    form: Form = "delta"
    """delta keeps the dictionary's reconstruction error (h + dec(f') − dec(f)); replace drops it on every
    token; replace_edited drops it only on the tokens where a suppressed feature was active."""
    max_target_information: float = 0.1
    """Keep only features with |AUROC − 0.5| ≤ this for the target label (see each command's statistic)."""


TYPOGRAPHIC_SELECTION = FeatureSelection(n_features=(4, 16, 64, 128, 256, 512), tokens=("all", "patches"),
                                         form="replace", max_target_information=0.3)
"""Measured on the toy's val split (blocks.1, 300 images; bound 0.1 / 0.2 / 0.3): the word's effect is spread
over hundreds of features, and glyph features respond weakly to object outlines too, so bound 0.1 keeps too few
of them (replace form: OCA 0.47 at k = 256 vs 0.67 at 0.2 and 0.69 at 0.3 with k = 128; no suppression: 0.34);
the word's patches are reconstructed worse than others (EV 0.84 vs 0.94), so dropping the error term (replace)
removes more of the word than the delta form (0.45 vs 0.41 at k = 64, bound 0.1)."""


@dataclass(frozen=True)
class SuppressionConfig:
    """What every suppression experiment takes (`debias`, `typographic-defense`)."""

    out: Path = Path("runs/suppression")
    """Run directory (each experiment has its own default)."""
    saes: tuple[Path, ...] = ()
    """SAE folders to compare (typically one per layer; at least one); each SAE's config names its hook site."""
    model: str | None = None
    """CLIP checkpoint folder or hub id; default: the toy CLIP shipped with clipsteer."""
    select_split: str = "train"
    """Features are ranked on this split."""
    choose_split: str = "val"
    """k, tokens and the best layer are chosen on this split."""
    report_split: str = "test"
    """The reported numbers come from this split."""
    templates: tuple[str, ...] | None = None
    """Class prompt templates; default: the dataset's own (`templates` attribute) or 'a photo of a {}.'."""
    selection: FeatureSelection = field(default_factory=FeatureSelection)
    random_draws: int = 3
    """Draws of random features averaged for the random control."""
    images_per_batch: int = 256
    """Images per forward pass."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    seed: int = 0
    """Seeds the random control."""
    guard_standard_errors: float = 1.0
    """Choice rule: a candidate's guard drop plus this many standard errors of it (paired over the choose
    split's images) must stay within the allowed drop, so that the choice keeps the bound on unseen images
    too (0: the point estimate alone). Choosing the best score right at the bound overshoots it on the
    report split: measured on the toy's typographic task (blocks.1, 1000 images), val drop 1.9 → test 2.5."""


@dataclass(frozen=True)
class DebiasConfig(SuppressionConfig):
    out: Path = Path("runs/debias")
    """Run directory: debias.run.json, result.json, features_<n>_<site>.json, debias_layers.png."""
    dataset: str = "world:background"
    """A labelled dataset spec: world:background, world:attribute, waterbirds:ROOT, celeba:ROOT, csv:ROOT."""
    max_images: int | None = 2000
    """Use at most the first this many images of each split (None: all)."""
    spurious_templates: tuple[str, ...] | None = None
    """Prompts for the spurious values (Orth-Proj); default: the dataset's or 'a photo of a {}.'."""
    max_avg_drop: float = 0.03
    """Choice rule: a candidate may lower the accuracy on choose_split by at most this much."""
    controls: tuple[DebiasControl, ...] = ("random", "neurons", "orth_proj")
    """Controls on the same splits: random SAE features, neurons by the same statistic, Orth-Proj."""


@dataclass(frozen=True)
class TypographicDefenseConfig(SuppressionConfig):
    out: Path = Path("runs/typographic")
    """Run directory: typographic-defense.run.json, result.json, features_<n>_<site>.json, typographic_layers.png."""
    dataset: str = "world:typographic"
    """world:typographic[:N] (paired variants), or a labelled spec whose images get rendered attacks."""
    max_images: int | None = 1000
    """Use at most the first this many images of each split (None: all)."""
    use_text_mask: bool = True
    """Score features on the written word's patches (when the dataset knows them)."""
    reference: Literal["clean", "blank"] = "blank"
    """The image the attacked one is compared with when ranking: clean, or blank (the same note without
    the word: isolates reading from the note's occlusion)."""
    selection: FeatureSelection = field(default_factory=lambda: TYPOGRAPHIC_SELECTION)
    """Text features: up to 512 of them, a looser object filter and the replace form (see TYPOGRAPHIC_SELECTION)."""
    max_clean_drop: float = 0.02
    """Choice rule: a candidate may lower clean accuracy on choose_split by at most this much."""
    controls: tuple[TypographicControl, ...] = ("random", "neurons")
    """Controls on the same splits: random SAE features and neurons by the same statistic."""
    attack_seed: int = 300
    """Seed of rendered attacks (ignored for the world, whose attacks are part of the task)."""


@dataclass(frozen=True)
class LayerSweepConfig:
    out: Path = Path("runs/layer_sweep")
    """Run folder: activations/, layerN/ (SAE, eval, steerability), layers.json/.csv/.png."""
    model: str | None = None
    """CLIP checkpoint folder or hub id; default: the toy CLIP shipped with clipsteer."""
    layers: tuple[int, ...] = ()
    """Layers to sweep (resid_post); default: all."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    seed: int = 0
    """Seeds SAE training and the steering controls."""
    harvest: HarvestConfig = HarvestConfig(max_images=20000)
    """How activations are harvested (`clipsteer harvest` flags; sites, out, model, device are set here)."""
    train: TrainConfig = TrainConfig(expansion_factor=16, trainer=TrainerConfig(total_tokens=10_000_000))
    """How each layer's SAE is trained (`clipsteer train` flags; store and out are set here)."""
    eval: EvalConfig = EvalConfig()
    """How each SAE is evaluated (`clipsteer eval` flags; sae, out, model, device are set here)."""
    steer: SteerabilityConfig = SteerabilityConfig()
    """How steerability is measured (`clipsteer steerability` flags; out, sae, model, device, seed are set here)."""
    run_steerability: bool = True
    """Measure steerability at each layer (the slowest step)."""


@dataclass(frozen=True)
class SparsityStudyConfig:
    out: Path = Path("runs/sparsity")
    """Run folder: per-site SAEs, sparsity.json, the tables and the plot."""
    model: str | None = None
    """CLIP checkpoint; default: the shipped toy CLIP."""
    images: str = "world:train"
    """Images whose activations train the vision SAEs (a folder or world:…)."""
    n_images: int = 1000
    """Images harvested for the vision tower."""
    captions: str = "world:train"
    """Captions for the text tower: a text file (one per line) or a dataset with captions (`world:…`)."""
    n_captions: int = 8000
    """Captions harvested for the text tower (from the image source's captions)."""
    held_out_fraction: float = 0.2
    """Images / captions kept out of training; L0 is measured on them."""
    expansion_factor: int = 4
    """d_sae = expansion_factor · d_model."""
    objective: ObjectiveConfig = ObjectiveConfig(sparsity_coefficient=1e-4)
    """The ReLU SAE's loss: the paper's (L1 with λ = 1e-4, its steering SAEs' λ; ghost grads)."""
    trainer: TrainerConfig = TrainerConfig(tokens_per_batch=1024, total_tokens=400_000, lr=4e-4, lr_warmup_steps=20,
                                           dead_feature_window=100, progress=False, log_every=100)
    """Optimiser and schedule of every SAE (`--trainer.total-tokens`: training tokens per SAE, revisited when a
    layer has fewer)."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    seed: int = 0
    """Seeds SAE training."""


@dataclass(frozen=True)
class DemoConfig(LayerSweepConfig):
    out: Path = Path("runs/demo")
    """Run folder: every step's output, report/index.html and summary.json."""
    layers: tuple[int, ...] = ()
    """Layers to study (resid_post); default: the middle one."""
    harvest: HarvestConfig = HarvestConfig(max_images=4000)
    train: TrainConfig = TrainConfig(
        architecture="topk", expansion_factor=16, k=32,
        trainer=TrainerConfig(total_tokens=2_000_000, lr=1e-3, dead_feature_window=200))
    """The SAE every later step uses: TopK converges in few steps on the toy CLIP."""
    relu: TrainConfig = TrainConfig(architecture="relu", expansion_factor=16,
                                    objective=ObjectiveConfig(sparsity_coefficient=3e-3),
                                    trainer=TrainerConfig(total_tokens=1_000_000))
    """The paper's vanilla SAE (ReLU + L1, layer-normed inputs, its loss), trained on the same store and
    evaluated beside. It starts from the fitted encoder scale: with `--relu.recipe paper` (W_enc = W_decᵀ)
    its EV is still negative after the demo's budget (−14 at 300k tokens on the toy). λ = 3e-3 because the
    paper's scale of λ leaves half the features firing on the toy (L0 ≈ 1000 of 2048)."""
    eval: EvalConfig = EvalConfig(n_images=1000)
    steer: SteerabilityConfig = SteerabilityConfig(n_images=64, max_features=256)
    debias: DebiasConfig = DebiasConfig(max_images=750)
    """How both world group tasks are debiased (`clipsteer debias` flags; saes, dataset, out, model are set here)."""
    typographic: TypographicDefenseConfig = TypographicDefenseConfig(max_images=300)
    """How the typographic defense runs (`clipsteer typographic-defense` flags; saes, out, model are set here)."""
    world_images: int = 1000
    """Images per task for the toy CLIP's own numbers (`clipsteer world evaluate --n-*`)."""
    fast: bool = False
    """A few-minute version: smaller default sizes everywhere (sizes you set yourself are kept)."""
