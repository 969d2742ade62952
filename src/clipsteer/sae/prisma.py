"""Load ViT-Prisma SAE checkpoints (the paper's released SAEs, and what Prisma's trainer writes).

Prisma's trainer (`VisionSAETrainer.checkpoint`) fills one folder with
    config.json                              `VisionModelSAERunnerConfig.save_config`
    n_images_{N}.pt                          `save_model`: torch.save({"cfg": <config object>, "state_dict": ...})
    n_images_{N}_log_feature_sparsity.pt     log10 firing frequency per feature, [d_sae]
for several N (one per checkpoint). Given the folder, the newest `n_images_{N}.pt` is loaded (the
sparsity logs are feature statistics: `read_prisma_feature_sparsity`). A `.pt` may also hold a plain
state dict (the released SAEs). The state dict is
    W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in].
The pickled config object is read as data by `clipsteer.torch_files.load_torch_file`: its class is
mapped to an inert record, nothing of ViT-Prisma is imported or run, and any other object in the file is
refused. Which config is used: an explicit `config_path`, else the config pickled with the weights (what
Prisma's own `load_from_pretrained` uses), else `config.json` next to the weights.

Prisma's forward is exactly clipsteer's: optional per-token layer norm (`normalize_activations=
"layer_norm"`, x̃ = (x − μ)/(σ + 1e-5), unbiased σ, output de-normalised with σ and μ), encoder applied to
x̃ − b_dec, ReLU or TopK(k)+ReLU, decoder + b_dec. So the tensors are used as they are.

Config fields read (others are ignored):
- `d_in` (required); `d_sae`, or `expansion_factor` (d_sae = d_in·expansion_factor, as Prisma's
  `d_sae` property computes it) — one of them is required, and both are checked against the weights;
- `activation_fn_str`: "relu" or "topk" (k from `activation_fn_kwargs.k`, or a top-level `k`);
- `architecture`: "standard" (or absent); "gated"/"jumprelu" have no Prisma inference code to match;
- `normalize_activations`: "layer_norm", "constant_norm_rescale", "none"/absent (older configs);
- hook: `hook_point` if present, else `blocks.{hook_point_layer}.{layer_subtype}`; a hook that is not a
  clipsteer site loads with an `UnknownSiteWarning`; `hook_point_head_index` (one head) is refused;
- tokens: `cls_token_only` → "cls", `use_patches_only` → "patches", otherwise "all";
- `model_name`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from clipsteer.sae.config import SAEConfig, SAEConfigError
from clipsteer.sae.hook_names import site_from_foreign_hook
from clipsteer.sae.io import SAEFormatError, read_json, sae_from_weights
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.torch_files import ForeignRecord, TorchFileError, load_torch_file

_NORMALIZATION = {"layer_norm": "layer_norm", "constant_norm_rescale": "token_rescale", "none": "none"}
# Config classes Prisma pickles into its .pt files; they are read as inert records (see module docstring).
PRISMA_CONFIG_CLASSES = ("vit_prisma.sae.config.VisionModelSAERunnerConfig",)
_CHECKPOINT = re.compile(r"^n_images_(\d+)\.pt$")
SPARSITY_SUFFIX = "_log_feature_sparsity.pt"


def read_prisma_pt(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(state dict, fields of the pickled config or None) from a Prisma .pt file; never runs foreign code."""
    try:
        data = load_torch_file(path, inert_classes=PRISMA_CONFIG_CLASSES)
    except TorchFileError as error:
        raise SAEFormatError(str(error)) from None
    pickled_config = None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        cfg = data.get("cfg")
        if isinstance(cfg, ForeignRecord):
            pickled_config = cfg.fields
        elif isinstance(cfg, dict):
            pickled_config = cfg
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise SAEFormatError(f"{path}: expected a state dict of tensors (W_enc, W_dec, b_enc, b_dec), got "
                             f"{type(data).__name__}")
    return data, pickled_config


def prisma_weights_file(folder: Path) -> Path:
    """The weights file of a Prisma folder: the newest `n_images_{N}.pt`, or its only other `.pt`."""
    weights = [p for p in sorted(folder.glob("*.pt")) if not p.name.endswith(SPARSITY_SUFFIX)]
    checkpoints = sorted((int(m.group(1)), p) for p in weights if (m := _CHECKPOINT.match(p.name)))
    if checkpoints:
        if len(checkpoints) > 1:
            warnings.warn(f"{folder}: {len(checkpoints)} Prisma checkpoints; loading the newest, "
                          f"{checkpoints[-1][1].name} (pass a .pt file to choose another)", stacklevel=3)
        return checkpoints[-1][1]
    if len(weights) != 1:
        raise FileNotFoundError(f"{folder}: expected Prisma weights (n_images_<N>.pt, or exactly one .pt file "
                                f"besides *{SPARSITY_SUFFIX}), found {[p.name for p in weights]}")
    return weights[0]


def read_prisma_feature_sparsity(weights_path: str | Path) -> Tensor:
    """log10 firing frequency per feature [d_sae] that Prisma's trainer saved beside `n_images_{N}.pt`."""
    weights_path = Path(weights_path)
    path = weights_path.with_name(weights_path.stem + SPARSITY_SUFFIX)
    try:
        data = load_torch_file(path)
    except TorchFileError as error:
        raise SAEFormatError(str(error)) from None
    if not isinstance(data, Tensor) or data.ndim != 1:
        raise SAEFormatError(f"{path}: expected a 1-D tensor of log10 feature frequencies, got "
                             f"{getattr(data, 'shape', type(data).__name__)}")
    return data.float()


def prisma_config(data: dict[str, Any], where: Path | str) -> SAEConfig:
    """Map Prisma's config fields (config.json, or the pickled config) onto an SAEConfig (see module docstring)."""
    if "d_in" not in data:
        raise SAEConfigError(f"{where}: missing required field 'd_in' (Prisma SAE config)")
    d_in = data["d_in"]
    if data.get("d_sae") is not None:
        d_sae = data["d_sae"]
    elif isinstance(data.get("expansion_factor"), int):
        d_sae = d_in * data["expansion_factor"]
    else:
        raise SAEConfigError(f"{where}: missing 'd_sae' and 'expansion_factor'; one of them is required")
    architecture = data.get("architecture") or "standard"
    if architecture != "standard":
        raise SAEConfigError(f"{where}: architecture {architecture!r} is not supported for Prisma SAEs; "
                             "expected 'standard' (with activation_fn_str relu or topk)")
    activation = data.get("activation_fn_str", "relu")
    kwargs = data.get("activation_fn_kwargs") or {}
    if activation == "relu":
        arch, k = "relu", None
    elif activation == "topk":
        k = kwargs.get("k", data.get("k"))
        if not isinstance(k, int):
            raise SAEConfigError(f"{where}: activation_fn_str 'topk' needs an integer k in activation_fn_kwargs "
                                 f"or a top-level 'k'; got {k!r}")
        arch = "topk"
    else:
        raise SAEConfigError(f"{where}: activation_fn_str {activation!r} is not supported; expected 'relu' or 'topk'")
    norm_key = data.get("normalize_activations") or "none"
    if norm_key not in _NORMALIZATION:
        raise SAEConfigError(f"{where}: normalize_activations {norm_key!r} is not supported; expected one of "
                             f"{sorted(_NORMALIZATION)}")
    if data.get("cls_token_only") and data.get("use_patches_only"):
        raise SAEConfigError(f"{where}: cls_token_only and use_patches_only are both true")
    if data.get("hook_point_head_index") is not None:
        raise SAEConfigError(f"{where}: hook_point_head_index={data['hook_point_head_index']!r} (an SAE on one "
                             "attention head) is not supported; clipsteer SAEs read whole residual-width sites")
    tokens = "cls" if data.get("cls_token_only") else "patches" if data.get("use_patches_only") else "all"
    hook = data.get("hook_point") or data.get("_custom_hook_point")
    if hook is None and data.get("hook_point_layer") is not None and data.get("layer_subtype"):
        layer = data["hook_point_layer"]
        layer = layer[0] if isinstance(layer, list) and len(layer) == 1 else layer
        hook = f"blocks.{layer}.{data['layer_subtype']}"
    try:
        return SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=k, normalization=_NORMALIZATION[norm_key],
                         site=site_from_foreign_hook(hook, where), tokens=tokens, model=data.get("model_name"),
                         source_format="prisma")
    except SAEConfigError as error:
        raise SAEConfigError(f"{where}: {error}") from None


def load_prisma_sae(weights_path: str | Path, config_path: str | Path | None = None,
                    device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load a Prisma SAE: `weights_path` is a .pt file or a trainer's folder; the config is `config_path`,
    else the one pickled in the .pt, else `config.json` beside it. Returns an eval-mode SAE computing
    Prisma's forward."""
    weights_path = Path(weights_path)
    if weights_path.is_dir():
        weights_path = prisma_weights_file(weights_path)
    weights, pickled_config = read_prisma_pt(weights_path)
    if config_path is not None or pickled_config is None:
        config_path = Path(config_path) if config_path is not None else weights_path.parent / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: not found; a Prisma SAE needs its config.json next to the "
                                    "weights (or a config pickled with them)")
        config = prisma_config(read_json(config_path), config_path)
    else:
        config = prisma_config(pickled_config, f"{weights_path} (pickled cfg)")
    tensors = {name: weights[name] for name in ("W_enc", "W_dec", "b_enc", "b_dec") if name in weights}
    extra = sorted(set(weights) - set(tensors))
    if extra:
        raise SAEFormatError(f"{weights_path}: unexpected tensors {extra}; a Prisma standard SAE has "
                             "W_enc, W_dec, b_enc, b_dec")
    return sae_from_weights(config, tensors, weights_path, device)
