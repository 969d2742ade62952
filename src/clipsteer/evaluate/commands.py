"""`clipsteer eval`: reconstruction, downstream fidelity and (on the synthetic world) factor recovery.

All metrics come from one pass over `n_images` images: the SAE's site is captured, encoded and
decoded batch by batch (memory stays bounded; patch-level factor recovery keeps codes for the first
`n_patch_images` images only). Results go to `out/eval.json` and a density histogram to
`out/feature_density.png`.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from clipsteer.atomic import atomic_write_bytes, atomic_write_json
from clipsteer.errors import check_positive
from clipsteer.evaluate.downstream import downstream_fidelity
from clipsteer.evaluate.factors import factor_recovery
from clipsteer.evaluate.reconstruction import ReconstructionMeter, density_histogram
from clipsteer.models.backbone import Backbone
from clipsteer.run_folder import RunFolder, folder_lock
from clipsteer.sae.loading import load_any_sae
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.world.paths import shipped_toy_clip


@dataclass(frozen=True)
class EvalConfig:
    sae: Path
    """An SAE: clipsteer folder, SAELens folder (cfg.json) or Prisma folder / .pt file."""
    out: Path | None = None
    """Where eval.json goes; default: the SAE folder (for a .pt file: the folder holding it)."""
    model: str | None = None
    """CLIP checkpoint; default: the shipped toy CLIP."""
    site: str | None = None
    """Default: the site recorded in the SAE's config."""
    world_split: str = "test"
    """Synthetic-world split for reconstruction, factor recovery and zero-shot fidelity."""
    n_images: int = 2000
    n_patch_images: int = 300
    batch_size: int = 100
    device: str = "cpu"


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def world_pass(backbone: Backbone, sae: SparseAutoencoder, site: str, split: str, n_images: int,
               n_patch_images: int, batch_size: int) -> dict:
    """Reconstruction metrics and factor recovery on `n_images` pretraining-distribution images."""
    from clipsteer.evaluate.world_factors import image_factors, patch_factors
    from clipsteer.world.dataset import WorldDataset

    dataset = WorldDataset("pretraining", split, n=n_images)
    meter = ReconstructionMeter(sae.d_sae)
    # Control: an untrained SAE of the same shape. Its best-of-many random features sets the AUROC a
    # trained SAE must beat for factor recovery to mean anything.
    control = SparseAutoencoder(sae.config, generator=torch.Generator().manual_seed(0)).to(module_device(sae)).eval()
    control.b_dec.data.copy_(sae.b_dec.data)
    image_codes, patch_codes, image_labels, patch_labels, control_codes, control_patch_codes = [], [], [], [], [], []
    for start in tqdm(range(0, n_images, batch_size), desc="eval", leave=False):
        batch = dataset.arrays(start, min(start + batch_size, n_images))
        x = backbone.capture(backbone.pixels(batch.images), [site])[site]  # [B, T, d]
        with torch.no_grad():
            out = sae(x)
        codes = out.codes.reshape(*x.shape[:2], sae.d_sae)
        meter.update(x, out.reconstruction.reshape(x.shape), codes)
        control_token_codes = control.encode(x)
        image_codes.append(codes.amax(dim=1))
        control_codes.append(control_token_codes.amax(dim=1))
        image_labels.append(image_factors(batch))
        if start < n_patch_images:
            patch_codes.append(codes[:, 1:].reshape(-1, sae.d_sae))
            control_patch_codes.append(control_token_codes[:, 1:].reshape(-1, sae.d_sae))
            patch_labels.append(patch_factors(batch))

    def cat(parts: list[dict]) -> dict:
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    image_level = factor_recovery(torch.cat(image_codes), cat(image_labels))
    control_level = factor_recovery(torch.cat(control_codes), cat(image_labels))
    control_patch_level = factor_recovery(torch.cat(control_patch_codes), cat(patch_labels))
    patch_level = factor_recovery(torch.cat(patch_codes), cat(patch_labels))
    groups = ("shape", "colour", "background")
    return {
        "reconstruction": meter.result(),
        "density_histogram": density_histogram(meter.frequencies()),
        "factor_recovery": {
            "image": image_level.summary(), "patch": patch_level.summary(),
            "image_mean_auroc_shape_colour_background": sum(image_level.mean_auroc_of(g) for g in groups) / 3,
            "image_mean_auroc_by_group": {g: image_level.mean_auroc_of(g) for g in (*groups, "word")},
            "image_mean_firing_f1_by_group": {g: image_level.mean_f1_of(g) for g in (*groups, "word")},
            "untrained_control_image_mean_firing_f1_by_group": {g: control_level.mean_f1_of(g)
                                                                for g in (*groups, "word")},
            "patch_mean_auroc_by_group": {g: patch_level.mean_auroc_of(g) for g in (*groups, "word")},
            "untrained_control_image_mean_auroc_by_group": {g: control_level.mean_auroc_of(g)
                                                            for g in (*groups, "word")},
            "untrained_control_patch_mean_auroc_by_group": {g: control_patch_level.mean_auroc_of(g)
                                                            for g in (*groups, "word")},
        },
    }


def world_downstream(backbone: Backbone, sae: SparseAutoencoder, site: str, split: str, n_images: int) -> dict:
    """Zero-shot shape classification on the world's clean zero-shot set with the SAE spliced in."""
    from clipsteer.world.dataset import WorldDataset
    from clipsteer.world.factors import SHAPES

    batch = WorldDataset("zero_shot", split, n=n_images).arrays()
    head = backbone.zero_shot_head(list(SHAPES), ["a photo of a {}"])
    labels = torch.as_tensor(batch.labels["shape"]).long()

    def reconstruct(h: torch.Tensor) -> torch.Tensor:
        return sae(h).reconstruction.reshape(h.shape).to(h.dtype)

    return downstream_fidelity(backbone, site, reconstruct, backbone.pixels(batch.images), labels, head)


def plot_density(hist: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    edges = hist["edges"]
    if edges:
        ax.bar(edges[:-1], hist["counts"], width=[b - a for a, b in zip(edges[:-1], edges[1:], strict=True)],
               align="edge")
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("features")
    ax.set_title(f"feature density ({hist['dead']} dead)")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())


def evaluate_sae(config: EvalConfig) -> dict:
    """Run the evaluation into `out` under the run-folder protocol: the folder is locked and created
    before any work (an unwritable one fails at once), and eval.json is written last, atomically."""
    check_positive(config, ("n_images", "n_patch_images", "batch_size"))
    sae = load_any_sae(config.sae, device=config.device).eval()   # a bad SAE path fails before anything is created
    out = Path(config.out or (config.sae if config.sae.is_dir() else config.sae.parent))
    run_config = {k: str(v) for k, v in asdict(config).items()}
    with folder_lock(out, "eval"):
        run = RunFolder(out, "eval", run_config, "eval.json")
        run.begin()
        result = _evaluate(config, sae, run_config)
        plot_density(result["density_histogram"], out / "feature_density.png")
        run.wrote(out / "feature_density.png")
        atomic_write_json(run.result_path, result)
        run.finish()
    r, d, f = result["reconstruction"], result["downstream"], result["factor_recovery"]
    print(f"[eval] {result['site']}: EV {r['explained_variance']:.3f}, L0 patches {r['l0_patches']:.1f} "
          f"({100 * r['l0_patches_fraction']:.2f}% of {sae.d_sae}), L0 CLS {r['l0_cls']:.1f}, dead "
          f"{100 * r['dead_fraction']:.1f}%, CE recovered {d['ce_recovered_pct']:.1f}%, "
          f"factor AUROC (image, shape/colour/background) {f['image_mean_auroc_shape_colour_background']:.3f}")
    return result


def _evaluate(config: EvalConfig, sae: SparseAutoencoder, run_config: dict) -> dict:
    backbone = Backbone.from_pretrained(config.model or shipped_toy_clip(), device=config.device)
    site = backbone.site(config.site or sae.config.site or "").name
    if sae.d_in != backbone.d_model:
        raise ValueError(f"SAE {config.sae} reads d_in = {sae.d_in}, but {backbone.name} has d_model = "
                         f"{backbone.d_model} at {site}")
    with torch.no_grad():
        result = {"sae": str(config.sae), "site": site, "config": run_config}
        result |= world_pass(backbone, sae, site, config.world_split, config.n_images, config.n_patch_images,
                             config.batch_size)
        result["downstream"] = world_downstream(backbone, sae, site, config.world_split, min(config.n_images, 1000))
    return result
