"""Configs of the experiment commands (debias, typographic-defense), importable without torch (instant
`--help`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clipsteer.models.sites import TokenSelection
from clipsteer.steer.edit_kinds import Form

SuppressOp = Literal["ablate", "mean_ablate"]
DebiasControl = Literal["random", "neurons", "orth_proj"]
TypographicControl = Literal["random", "neurons"]


@dataclass(frozen=True)
class FeatureSelection:
    n_features: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """Candidate k (how many top-ranked features to suppress); k is chosen on the validation split."""
    tokens: tuple[TokenSelection, ...] = ("all", "patches")
    """Candidate tokens to suppress on (also the tokens whose max gives an image's feature score)."""
    op: SuppressOp = "ablate"
    """ablate: set the codes to 0; mean_ablate: to their mean over the selection split's tokens."""
    form: Form = "delta"
    """delta keeps the dictionary's reconstruction error (h + dec(f') − dec(f)); replace drops it."""
    max_target_information: float = 0.1
    """Keep only features with |AUROC − 0.5| ≤ this for the target label (see each command's statistic)."""


@dataclass(frozen=True)
class DebiasConfig:
    saes: tuple[Path, ...] = ()
    """SAE folders to compare (typically one per layer; at least one); each SAE's config names its hook site."""
    out: Path = Path("runs/debias")
    """Run directory: config.json, result.json, features_<n>_<site>.json, debias_layers.png."""
    model: str | None = None
    """CLIP checkpoint folder or hub id; default: the toy CLIP shipped with clipsteer."""
    dataset: str = "world:background"
    """A labelled dataset spec: world:background, world:attribute, waterbirds:ROOT, celeba:ROOT, csv:ROOT."""
    select_split: str = "train"
    """Features are ranked on this split."""
    choose_split: str = "val"
    """k, tokens and the best layer are chosen on this split."""
    report_split: str = "test"
    """The reported numbers come from this split."""
    max_images: int | None = 2000
    """Use at most the first this many images of each split (None: all)."""
    templates: tuple[str, ...] | None = None
    """Class prompt templates; default: the dataset's own (`templates` attribute) or 'a photo of a {}.'."""
    spurious_templates: tuple[str, ...] | None = None
    """Prompts for the spurious values (Orth-Proj); default: the dataset's or 'a photo of a {}.'."""
    selection: FeatureSelection = field(default_factory=FeatureSelection)
    max_avg_drop: float = 0.03
    """Choice rule: a candidate may lower the average accuracy on choose_split by at most this much."""
    controls: tuple[DebiasControl, ...] = ("random", "neurons", "orth_proj")
    """Controls on the same splits: random SAE features, neurons by the same statistic, Orth-Proj."""
    random_draws: int = 3
    """Draws of random features averaged for the random control."""
    images_per_batch: int = 256
    """Images per forward pass."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    seed: int = 0
    """Seeds the random control and the model's sampling."""




@dataclass(frozen=True)
class TypographicDefenseConfig:
    saes: tuple[Path, ...] = ()
    """SAE folders to compare (typically one per layer; at least one); each SAE's config names its hook site."""
    out: Path = Path("runs/typographic")
    """Run directory: config.json, result.json, features_<n>_<site>.json, typographic_layers.png."""
    model: str | None = None
    """CLIP checkpoint folder or hub id; default: the toy CLIP shipped with clipsteer."""
    dataset: str = "world:typographic"
    """world:typographic[:N] (paired variants), or a labelled spec whose images get rendered attacks."""
    select_split: str = "train"
    """Features are ranked on this split."""
    choose_split: str = "val"
    """k, tokens and the best layer are chosen on this split."""
    report_split: str = "test"
    """The reported numbers come from this split."""
    max_images: int | None = 1000
    """Use at most the first this many images of each split (None: all)."""
    templates: tuple[str, ...] | None = None
    """Class prompt templates; default: the dataset's own or 'a photo of a {}.' (Defense-Prefix)."""
    selection: FeatureSelection = field(default_factory=FeatureSelection)
    use_text_mask: bool = True
    """Score features on the written word's patches (when the dataset knows them)."""
    reference: Literal["clean", "blank"] = "clean"
    """The image the attacked one is compared with when ranking: clean, or blank (the same note without
    the word: isolates reading from the note's occlusion)."""
    max_clean_drop: float = 0.02
    """Choice rule: a candidate may lower clean accuracy on choose_split by at most this much."""
    controls: tuple[TypographicControl, ...] = ("random", "neurons")
    """Controls on the same splits: random SAE features and neurons by the same statistic."""
    random_draws: int = 3
    """Draws of random features averaged for the random control."""
    attack_seed: int = 300
    """Seed of rendered attacks (ignored for the world, whose attacks are part of the task)."""
    images_per_batch: int = 256
    """Images per forward pass."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    seed: int = 0
    """Seeds the random control."""
