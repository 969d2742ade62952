"""Write files exactly as ViT-Prisma's SAE trainer writes them, without ViT-Prisma installed.

`VisionSAETrainer.checkpoint` (Prisma-Multimodal/ViT-Prisma, src/vit_prisma/sae/train_sae.py) does
    cfg.save_config(f"{checkpoint_path}/config.json")            # json.dump of asdict(cfg) + _dtype/_device
    sae.save_model(f"{checkpoint_path}/n_images_{N}.pt")          # torch.save({"cfg": cfg, "state_dict": sd})
    torch.save(log10(feature_sparsity + 1e-10), f".../n_images_{N}_log_feature_sparsity.pt")
The pickled `cfg` is a `vit_prisma.sae.config.VisionModelSAERunnerConfig` dataclass instance. To pickle
one under that exact module and class name, a dataclass with Prisma's field names is registered as that
module for the duration of `torch.save` only, so the bytes on disk are what Prisma writes (pickle records
the class by name and the instance by its field dict).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# Prisma's VisionModelSAERunnerConfig field names and defaults (a subset; values as its trainer sets them).
PRISMA_FIELDS: dict[str, Any] = {
    "model_class_name": "HookedViT", "model_name": "open-clip:laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K",
    "vit_model_cfg": None, "model_path": None, "hook_point_layer": 11, "layer_subtype": "hook_resid_post",
    "hook_point_head_index": None, "context_size": 50, "use_cached_activations": False, "use_patches_only": False,
    "cached_activations_path": "activations/x/y/blocks.11.hook_resid_post", "image_size": 224,
    "architecture": "standard", "b_dec_init_method": "geometric_median", "expansion_factor": 4,
    "from_pretrained_path": None, "is_transcoder": False, "_device": "cuda", "seed": 42, "_dtype": "float32",
    "d_in": 12, "activation_fn_str": "relu", "activation_fn_kwargs": {}, "cls_token_only": False,
    "max_grad_norm": 1.0, "initialization_method": "independent", "normalize_activations": "layer_norm",
    "n_batches_in_buffer": 20, "store_batch_size": 32, "num_workers": 16, "num_epochs": 1, "verbose": False,
    "l1_coefficient": 0.0002, "lp_norm": 1, "lr": 0.001, "lr_scheduler_name": "cosineannealingwarmup",
    "lr_warm_up_steps": 500, "train_batch_size": 4096, "dataset_name": "imagenet1k", "use_ghost_grads": False,
    "feature_sampling_window": 1000, "dead_feature_window": 5000, "dead_feature_threshold": 1e-8,
    "log_to_wandb": True, "wandb_project": "vit_sae", "wandb_entity": None, "wandb_log_frequency": 10,
    "n_validation_runs": 0, "n_checkpoints": 10, "checkpoint_path": "checkpoints/run",
}


@contextmanager
def prisma_config_class() -> Iterator[type]:
    """`vit_prisma.sae.config.VisionModelSAERunnerConfig` (a stand-in with its field names), importable
    only inside the block."""
    cls = dataclasses.make_dataclass(
        "VisionModelSAERunnerConfig",
        [(name, Any, dataclasses.field(default=value if not isinstance(value, dict) else None))
         for name, value in PRISMA_FIELDS.items()])
    cls.__module__ = "vit_prisma.sae.config"
    names = ["vit_prisma", "vit_prisma.sae", "vit_prisma.sae.config"]
    saved = {name: sys.modules.get(name) for name in names}
    module = types.ModuleType("vit_prisma.sae.config")
    module.VisionModelSAERunnerConfig = cls  # type: ignore[attr-defined]
    sys.modules.update({"vit_prisma": types.ModuleType("vit_prisma"),
                        "vit_prisma.sae": types.ModuleType("vit_prisma.sae"), "vit_prisma.sae.config": module})
    try:
        yield cls
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def prisma_fields(**overrides: Any) -> dict[str, Any]:
    fields = {**PRISMA_FIELDS, **overrides}
    fields["activation_fn_kwargs"] = fields.get("activation_fn_kwargs") or {}
    return fields


def write_prisma_checkpoint(folder: Path, weights: dict[str, torch.Tensor], n_images: int,
                            feature_sparsity: torch.Tensor | None = None, **overrides: Any) -> Path:
    """One `VisionSAETrainer.checkpoint` call: config.json, n_images_{N}.pt (pickled cfg), sparsity log."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = prisma_fields(**overrides)
    (folder / "config.json").write_text(json.dumps(fields, indent=4))
    path = folder / f"n_images_{n_images}.pt"
    with prisma_config_class() as cls:
        cfg = cls(**fields)
        torch.save({"cfg": cfg, "state_dict": dict(weights)}, path)
    d_sae = weights["W_enc"].shape[1]
    sparsity = feature_sparsity if feature_sparsity is not None else torch.full((d_sae,), 0.01)
    torch.save(torch.log10(sparsity + 1e-10), folder / f"n_images_{n_images}_log_feature_sparsity.pt")
    return path
