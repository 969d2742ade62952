"""`clipsteer eval`: reconstruction, downstream fidelity and (where the dataset has ground truth) factor
recovery of an SAE, on any dataset: an image folder, or a registered source such as `world:…`.

    clipsteer eval --sae runs/sae/saes/topk_x16_k32                         # the toy world (defaults)
    clipsteer eval --sae SAE --model CLIP_DIR --dataset IMAGES --classes cat dog --n-images 500

One pass over `n_images` images captures the SAE's site batch by batch (memory stays bounded;
patch-level factor recovery keeps codes for the first `n_patch_images` images only). Downstream
fidelity runs on `downstream_dataset` (default: `dataset`): CE recovered when its images carry class
labels, otherwise embedding cosine, zero-shot KL and agreement over `--classes` (or the dataset's own
class names). Factor recovery needs a dataset with ground-truth factors (`FactorAnnotated`: the
synthetic world) and is skipped, saying so, elsewhere. Results: `out/eval.json` (`EvalResult`, written
last: the step's completion marker) and `out/feature_density.png`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from clipsteer.activations.prefetch import iter_chunks
from clipsteer.atomic import atomic_write_bytes
from clipsteer.data.protocol import FactorAnnotated, ImageDataset, LabelledDataset
from clipsteer.data.resolve import open_dataset
from clipsteer.errors import ConfigError, check_positive
from clipsteer.evaluate.configs import EvalConfig
from clipsteer.evaluate.downstream import downstream_fidelity
from clipsteer.evaluate.factors import FactorRecovery, factor_recovery
from clipsteer.evaluate.reconstruction import ReconstructionMeter, density_histogram
from clipsteer.evaluate.results import Downstream, EvalResult, FactorSummary, Reconstruction
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.results import to_json
from clipsteer.run_folder import RunFolder, folder_lock
from clipsteer.sae.loading import load_any_sae
from clipsteer.sae.model import SparseAutoencoder


def image_chunks(backbone: Backbone, dataset: ImageDataset, n_images: int, images_per_batch: int, desc: str):
    """Preprocessed readable images of `dataset[:n_images]` in batches (unreadable ones are skipped)."""
    n = min(n_images, len(dataset))
    with tqdm(total=n, desc=desc, unit="img", leave=False) as bar:
        for chunk in iter_chunks(dataset, 0, n, images_per_batch, backbone.preprocess, workers=2):
            bar.update(chunk.end - chunk.start)
            if len(chunk.indices):
                yield chunk


def untrained_control(sae: SparseAutoencoder) -> SparseAutoencoder:
    """An untrained SAE of the same shape: its best-of-many random features set the AUROC a trained SAE
    must beat for factor recovery to mean anything."""
    device = next(sae.parameters()).device
    control = SparseAutoencoder(sae.config, generator=torch.Generator().manual_seed(0)).to(device).eval()
    control.b_dec.data.copy_(sae.b_dec.data)
    return control


def by_group(recovery: FactorRecovery, score: str) -> dict[str, float]:
    groups = dict.fromkeys(s.factor.split(":")[0] for s in recovery.scores)
    return {g: (recovery.mean_auroc_of(g + ":") if score == "auroc" else recovery.mean_f1_of(g + ":")) for g in groups}


@torch.no_grad()
def reconstruction_pass(backbone: Backbone, sae: SparseAutoencoder, site: str, dataset: ImageDataset, n_images: int,
                        n_patch_images: int, images_per_batch: int) -> tuple[Reconstruction, dict, FactorSummary | None]:
    """Reconstruction metrics over `n_images` images, and factor recovery when the dataset is annotated."""
    annotated = isinstance(dataset, FactorAnnotated)
    meter = ReconstructionMeter(sae.d_sae)
    control = untrained_control(sae) if annotated else None
    parts: dict[str, list] = {k: [] for k in ("image", "control", "patch", "control_patch", "image_y", "patch_y")}
    for chunk in image_chunks(backbone, dataset, n_images, images_per_batch, "eval"):
        x = backbone.capture(chunk.pixels, [site])[site]  # [B, T, d]
        out = sae(x)
        codes = out.codes.reshape(*x.shape[:2], sae.d_sae)
        meter.update(x, out.reconstruction.reshape(x.shape), codes)
        if control is None:
            continue
        keep = chunk.indices - chunk.start  # readable images within [start, end)
        image_y = {k: v[keep] for k, v in dataset.image_factors(chunk.start, chunk.end).items()}
        control_codes = control.encode(x)
        parts["image"].append(codes.amax(dim=1))
        parts["control"].append(control_codes.amax(dim=1))
        parts["image_y"].append(image_y)
        if chunk.start < n_patch_images:
            patch_y = {k: v[keep].reshape(-1) for k, v in dataset.patch_factors(chunk.start, chunk.end).items()}
            parts["patch"].append(codes[:, 1:].reshape(-1, sae.d_sae))
            parts["control_patch"].append(control_codes[:, 1:].reshape(-1, sae.d_sae))
            parts["patch_y"].append(patch_y)
    reconstruction = Reconstruction(**meter.result())
    histogram = density_histogram(meter.frequencies())
    if control is None:
        return reconstruction, histogram, None

    def labels(key: str) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(np.concatenate([p[k] for p in parts[key]])) for k in parts[key][0]}

    image = factor_recovery(torch.cat(parts["image"]), labels("image_y"))
    image_control = factor_recovery(torch.cat(parts["control"]), labels("image_y"))
    patch = factor_recovery(torch.cat(parts["patch"]), labels("patch_y"))
    patch_control = factor_recovery(torch.cat(parts["control_patch"]), labels("patch_y"))
    summary = FactorSummary(
        image_auroc=by_group(image, "auroc"), patch_auroc=by_group(patch, "auroc"),
        image_firing_f1=by_group(image, "f1"), control_image_auroc=by_group(image_control, "auroc"),
        control_patch_auroc=by_group(patch_control, "auroc"), control_image_firing_f1=by_group(image_control, "f1"),
        image=image.summary(), patch=patch.summary())
    return reconstruction, histogram, summary


@torch.no_grad()
def downstream_pass(backbone: Backbone, sae: SparseAutoencoder, site: str, dataset: ImageDataset, n_images: int,
                    classes: tuple[str, ...], templates: tuple[str, ...], images_per_batch: int) -> Downstream | None:
    """Zero-shot fidelity with the SAE spliced in; None (with a note) when no classes are known."""
    labelled = isinstance(dataset, LabelledDataset)
    classes = classes or (tuple(dataset.class_names) if labelled else ())
    if len(classes) < 2:
        print("[eval] downstream fidelity skipped: no zero-shot classes (pass --classes, or a labelled dataset)")
        return None
    chunks = list(image_chunks(backbone, dataset, n_images, images_per_batch, "downstream"))
    pixels = torch.cat([c.pixels for c in chunks])
    indices = np.concatenate([c.indices for c in chunks])
    labels = None
    if labelled and tuple(dataset.class_names) == classes:
        y = np.asarray(dataset.labels()["label"])[indices]
        pixels, labels = pixels[torch.as_tensor(y >= 0)], torch.as_tensor(y[y >= 0])  # −1: no class shown
    head = backbone.zero_shot_head(list(classes), list(templates))

    def reconstruct(h: torch.Tensor) -> torch.Tensor:
        return sae(h).reconstruction.reshape(h.shape).to(h.dtype)

    return downstream_fidelity(backbone, site, reconstruct, pixels, head, classes, labels, images_per_batch)


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


def describe(result: EvalResult) -> str:
    r, d, f = result.reconstruction, result.downstream, result.factor_recovery
    parts = [f"EV {r.explained_variance:.3f}"]
    if r.l0_patches is not None:
        parts.append(f"L0 patches {r.l0_patches:.1f} ({100 * r.l0_patches_fraction:.2f}%)")
    if r.l0_cls is not None:
        parts.append(f"L0 CLS {r.l0_cls:.1f}")
    parts.append(f"dead {100 * r.dead_fraction:.1f}%")
    if d is not None:
        parts.append(f"embedding cos {d.embedding_cosine:.3f}, zero-shot KL {d.kl_zero_shot:.3g}")
        if d.ce_recovered_pct is not None:
            parts.append(f"CE recovered {d.ce_recovered_pct:.1f}%")
    if f is not None:
        parts.append(f"factor AUROC (image, mean over groups) {FactorSummary.mean(f.image_auroc):.3f} "
                     f"vs untrained {FactorSummary.mean(f.control_image_auroc):.3f}")
    else:
        parts.append("factor recovery: n/a (the dataset has no ground-truth factors)")
    return f"[eval] {result.site} on {result.dataset}: " + ", ".join(parts)


def evaluate_sae(config: EvalConfig) -> EvalResult:
    """Run the evaluation into `out` under the run-folder protocol: the folder is locked and created
    before any work (an unwritable one fails at once), and eval.json is written last, atomically."""
    if config.sae is None:
        raise ConfigError("eval: --sae is required (an SAE folder or file)")
    check_positive(config, ("n_images", "n_downstream_images", "images_per_batch"))
    if config.n_patch_images < 0:
        raise ConfigError(f"--n-patch-images must be ≥ 0, got {config.n_patch_images}")
    sae = load_any_sae(config.sae, device=config.device).eval()   # a bad SAE path fails before anything is created
    out = Path(config.out or (config.sae if config.sae.is_dir() else config.sae.parent))
    run_config = to_json(config)
    with folder_lock(out, "eval"):
        run = RunFolder(out, "eval", run_config, EvalResult.FILE)
        run.begin()
        result = _evaluate(config, sae, run_config)
        plot_density(result.density_histogram, out / "feature_density.png")
        run.wrote(out / "feature_density.png")
        result.write(out)
        run.finish()
    print(describe(result))
    return result


def _evaluate(config: EvalConfig, sae: SparseAutoencoder, run_config: dict) -> EvalResult:
    model = resolve_model(config.model)
    backbone = Backbone.from_pretrained(model, device=config.device)
    site = backbone.site(config.site or sae.config.site or "").name
    if sae.d_in != backbone.d_model:
        raise ValueError(f"SAE {config.sae} reads d_in = {sae.d_in}, but {backbone.name} has d_model = "
                         f"{backbone.d_model} at {site}")
    dataset = open_dataset(config.dataset, model_dir=backbone.model_dir)
    reconstruction, histogram, factors = reconstruction_pass(backbone, sae, site, dataset, config.n_images,
                                                             config.n_patch_images, config.images_per_batch)
    downstream_data = (open_dataset(config.downstream_dataset, model_dir=backbone.model_dir)
                       if config.downstream_dataset else dataset)
    downstream = downstream_pass(backbone, sae, site, downstream_data, config.n_downstream_images, config.classes,
                                 config.templates, config.images_per_batch)
    return EvalResult(sae=str(config.sae), site=site, model=model, dataset=config.dataset,
                      n_images=min(config.n_images, len(dataset)), reconstruction=reconstruction,
                      density_histogram=histogram, downstream=downstream, factor_recovery=factors,
                      config=run_config)
