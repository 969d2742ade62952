"""`clipsteer layer-sweep`: the whole pipeline at every layer — harvest, train, evaluate, steer.

Per layer of the vision tower (resid_post): one activation store (all layers harvested in one pass),
one SAE, its evaluation (`eval.json`: reconstruction, downstream fidelity, factor recovery) and its
steerability (SAE features vs neurons vs a random-weights control). A table (`layers.json`,
`layers.csv`) and a plot (`layers.png`) compare layers. Every step resumes or is skipped when its
output exists, so rerunning the same command continues an interrupted sweep.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

from clipsteer.activations.harvest import HarvestConfig, harvest
from clipsteer.evaluate.commands import EvalConfig, evaluate_sae
from clipsteer.experiments.concept_match import concept_matches
from clipsteer.models.backbone import Backbone
from clipsteer.sae.commands import TrainConfig, train
from clipsteer.sae.config import Architecture
from clipsteer.sae.loading import load_any_sae
from clipsteer.sae.objectives import ObjectiveConfig
from clipsteer.sae.recipe import TrainerConfig
from clipsteer.steer.commands import SteerabilityConfig, steerability
from clipsteer.world.paths import shipped_toy_clip


@dataclass(frozen=True)
class LayerSweepConfig:
    out: Path = Path("runs/layer_sweep")
    model: str | None = None
    """CLIP checkpoint; default: the shipped toy CLIP."""
    layers: tuple[int, ...] = ()
    """Layers to sweep (resid_post); default: all."""
    dataset: str = "world:train"
    harvest_images: int = 20000
    architecture: Architecture = "relu"
    expansion_factor: int = 16
    sparsity_coefficient: float = 1e-4
    """λ for relu (the paper's steering SAEs: 1e-4)."""
    k: int = 32
    """Active features per token for topk / batchtopk."""
    train_tokens: int = 10_000_000
    batch_size: int = 4096
    lr: float = 4e-4
    dead_feature_window: int = 5000
    """Steps without firing before ghost grads / AuxK treat a feature as dead (short runs need fewer)."""
    eval_images: int = 2000
    steer_dataset: str = "world:zero_shot/test"
    """Images whose CLIP reading is steered (the paper: 192 ImageNet validation images)."""
    steer_images: int = 192
    steer_max_features: int | None = None
    """Score an evenly spaced subset of SAE features (default: all)."""
    steer_alphas: tuple[float, ...] = ()
    """Also measure the fraction steerable at these α (each costs one more steering pass)."""
    random_control: bool = True
    steer: bool = True
    device: str = "cpu"
    seed: int = 0


def sae_name(config: LayerSweepConfig) -> str:
    uses_k = config.architecture in ("topk", "batchtopk")
    suffix = f"_k{config.k}" if uses_k else f"_lambda{config.sparsity_coefficient:g}"
    return f"{config.architecture}_x{config.expansion_factor}{suffix}"


def layer_sweep(config: LayerSweepConfig) -> list[dict]:
    model = str(config.model or shipped_toy_clip())
    n_layers = Backbone.from_pretrained(model, device=config.device).n_layers
    layers = config.layers or tuple(range(n_layers))
    out = Path(config.out)
    sites = tuple(f"blocks.{layer}.resid_post" for layer in layers)
    stores = harvest(HarvestConfig(sites=sites, out=out / "activations", model=model, dataset=config.dataset,
                                   max_images=config.harvest_images, device=config.device))
    rows = []
    for layer, site in zip(layers, sites, strict=True):
        run_dir = out / f"layer{layer}"
        trainer = TrainerConfig(batch_size=config.batch_size, total_tokens=config.train_tokens, lr=config.lr,
                                dead_feature_window=config.dead_feature_window, device=config.device,
                                seed=config.seed, progress=False)
        saes = train(TrainConfig(store=stores[site], out=run_dir / "train", architecture=config.architecture,
                                 expansion_factor=config.expansion_factor, k=config.k,
                                 objective=replace(ObjectiveConfig(), sparsity_coefficient=config.sparsity_coefficient),
                                 trainer=trainer))
        sae_dir = saes[sae_name(config)]
        eval_file = sae_dir / "eval.json"
        result = (json.loads(eval_file.read_text()) if eval_file.is_file() else
                  evaluate_sae(EvalConfig(sae=sae_dir, model=model, n_images=config.eval_images, device=config.device)))
        row = layer_row(layer, result)
        if config.steer:
            steer_dir = run_dir / "steerability"
            summary_file = steer_dir / "summary.json"
            summary = (json.loads(summary_file.read_text()) if summary_file.is_file() else
                       steerability(SteerabilityConfig(out=steer_dir, sae=sae_dir, model=model,
                                                       images=config.steer_dataset, n_images=config.steer_images,
                                                       max_features=config.steer_max_features,
                                                       alpha_sweep=config.steer_alphas,
                                                       random_control=config.random_control, device=config.device,
                                                       seed=config.seed)))
            for basis in ("sae", "neurons", "random_sae", "random_neurons"):
                if basis in summary:
                    row[f"steerable_{basis}"] = summary[basis]["fraction_steerable"]
                    row[f"concepts_{basis}"] = summary[basis]["distinct_concepts"]
            for basis, by_alpha in summary.get("alpha_sweep", {}).items():
                row |= {f"steerable_{basis}_alpha{alpha}": fraction for alpha, fraction in by_alpha.items()}
            row |= match_layer(model, sae_dir, site, steer_dir, config)
        rows.append(row)
        print(f"[layer-sweep] layer {layer}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                        for k, v in row.items()))
    write_table(rows, out)
    plot_layers(rows, out / "layers.png")
    return rows


def match_layer(model: str, sae_dir: Path, site: str, steer_dir: Path, config: LayerSweepConfig) -> dict:
    """Steerable SAE features whose top concept names a factor they detect (`concept_matches.json`)."""
    match_file = steer_dir / "concept_matches.json"
    if not match_file.is_file():
        rows = [json.loads(line) for line in (steer_dir / "features_sae.jsonl").read_text().splitlines()]
        backbone = Backbone.from_pretrained(model, device=config.device)
        sae = load_any_sae(sae_dir, device=config.device)
        match_file.write_text(json.dumps(concept_matches(backbone, sae, site, rows), indent=2))
    result = json.loads(match_file.read_text())
    return {"steerable_matching_detected_factor": result["n_matched"]}


def layer_row(layer: int, result: dict) -> dict:
    rec, down, fac = result["reconstruction"], result["downstream"], result["factor_recovery"]
    return {
        "layer": layer, "explained_variance": rec["explained_variance"], "l0_patches": rec["l0_patches"],
        "l0_cls": rec["l0_cls"], "l0_patches_fraction": rec["l0_patches_fraction"],
        "dead_fraction": rec["dead_fraction"], "ce_recovered_pct": down["ce_recovered_pct"],
        "factor_auroc_image": fac["image_mean_auroc_shape_colour_background"],
        "factor_auroc_image_control": sum(fac["untrained_control_image_mean_auroc_by_group"][g]
                                          for g in ("shape", "colour", "background")) / 3,
        "factor_auroc_patch": sum(fac["patch_mean_auroc_by_group"][g] for g in ("shape", "colour", "background")) / 3,
        "factor_auroc_patch_control": sum(fac["untrained_control_patch_mean_auroc_by_group"][g]
                                          for g in ("shape", "colour", "background")) / 3,
        "word_auroc_image": fac["image_mean_auroc_by_group"]["word"],
    }


def write_table(rows: list[dict], out: Path) -> None:
    (out / "layers.json").write_text(json.dumps(rows, indent=2))
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with (out / "layers.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot_layers(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [r["layer"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    names = {"sae": "SAE features", "neurons": "neurons", "random_sae": "SAE dirs, random model",
             "random_neurons": "neurons, random model"}
    colours = dict(zip(names, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True))
    keys = [k for k in rows[0] if k.startswith("steerable_") and k != "steerable_matching_detected_factor"]
    alphas = sorted({k.partition("_alpha")[2] for k in keys} - {""}, key=float)
    styles = ["--", ":", "-."]
    for key in keys:  # colour = basis; solid = the run's α, dashed/dotted = the α sweep
        if all(key in r for r in rows):
            basis, _, alpha = key.removeprefix("steerable_").partition("_alpha")
            style = styles[alphas.index(alpha) % len(styles)] if alpha else "-"
            label = names.get(basis, basis) + (f", α={alpha}" if alpha else "")
            left.plot(layers, [r[key] for r in rows], marker="o", markersize=3, label=label, linestyle=style,
                      color=colours.get(basis))
    left.set_xlabel("layer (resid_post)")
    left.set_ylabel("fraction steerable (S > 0.10)")
    left.legend(fontsize=7)
    for key, label in [("factor_auroc_image", "SAE, image level"), ("factor_auroc_patch", "SAE, patch level"),
                       ("factor_auroc_image_control", "untrained SAE, image level"),
                       ("factor_auroc_patch_control", "untrained SAE, patch level")]:
        right.plot(layers, [r[key] for r in rows], marker="o", label=label)
    right.set_xlabel("layer (resid_post)")
    right.set_ylabel("mean best-feature AUROC")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
