"""The steerability command's config, importable without torch (instant `--help`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clipsteer.models.sites import TokenSelection
from clipsteer.steer.calibration import PAPER_CURVE_ALPHAS, PAPER_RELATIVE_ALPHA

Engine = Literal["auto", "plain", "suffix", "closed_form"]


Basis = Literal["sae", "null", "neurons", "neurons_ln"]


DEFAULT_BASES: tuple[Basis, ...] = ("sae", "null", "neurons", "neurons_ln")


@dataclass(frozen=True)
class SteerabilityConfig:
    out: Path = Path("runs/steerability")
    """Output directory."""
    sae: Path | None = None
    """An SAE (clipsteer, SAELens or Prisma format). Without it the null and the neurons are scored."""
    model: str | None = None
    """CLIP checkpoint; default: the shipped toy CLIP."""
    site: str | None = None
    """Hook site; default: the SAE's own site."""
    images: str = "world:zero_shot/test"
    """Images whose reading is steered: an image folder or `world:<split>`; the first `n_images` are used."""
    n_images: int = 192
    """The paper: 192."""
    vocabulary: str | None = None
    """Concepts: a word-list file, `tokenizer` (the model's whole words) or `images` (the image source's own,
    e.g. the world's caption phrases). Default: the image source's own if it has one, else `tokenizer`."""
    vocab_size: int = 5000
    """At most this many concepts (the paper: 5000 words)."""
    alpha: float | None = None
    """Absolute clamp (the paper's code: 150). Default: `relative_alpha` × the layer-normed token norm."""
    relative_alpha: float = PAPER_RELATIVE_ALPHA
    """α as a multiple of ‖x̃‖ = √(d − 1); the default 150/√767 ≈ 5.42 is the paper's α = 150 on ViT-B/32."""
    temperature: float | None = None
    """Readout softmax temperature; default: the model's own logit scale (the paper's τ = 100 is CLIP's)."""
    tokens: TokenSelection = "all"
    """Tokens the clamp is applied to: all (the paper), cls or patches."""
    threshold: float = 0.10
    """A feature is steerable when its steerability S exceeds this (the paper: 0.10)."""
    bases: tuple[Basis, ...] = DEFAULT_BASES
    """What to score: SAE features, the random-direction null, neurons in raw and in layer-normed units."""
    random_vision: bool = False
    """Also score the SAE and raw neurons in a re-initialised-vision model (a labelled diagnostic, not a null)."""
    max_features: int | None = None
    """Score an evenly spaced subset of this many SAE features (default: all; neurons: always all)."""
    null_features: int | None = None
    """Random directions scored for the null; default: as many as SAE features scored (d_model without an SAE)."""
    alpha_sweep: tuple[float, ...] = ()
    """Also report every basis's fraction steerable at these α, in the paper's units (scaled by α/150)."""
    curve_features: tuple[int, ...] = ()
    """SAE features whose strength curves (S and P against α) are recorded and plotted."""
    curve_alphas: tuple[float, ...] = PAPER_CURVE_ALPHAS
    """α of the strength curves, in the paper's units (scaled by α/150)."""
    match_images: str = "world:pretraining/test"
    """Images with concept labels for the concept match; skipped when the source has none."""
    match_n_images: int = 1000
    """Images rendered to measure which factors each unit detects (concept match; sources with concept labels only)."""
    match_threshold: float = 0.8
    """A unit detects a factor when its image-level AUROC for it is at least this."""
    engine: Engine = "auto"
    """How steered forwards are computed, all with the same numbers: plain (the reference), suffix (the clean
    prefix computed once), closed_form (last block only) or auto (the fastest that applies)."""
    pairs_per_forward: int = 256
    """Rows per forward when resuming from the site (feature × image pairs are stacked)."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    seed: int = 0
    """Seeds the null's directions and the re-initialised vision tower."""
