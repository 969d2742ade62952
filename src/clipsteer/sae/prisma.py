"""Load ViT-Prisma SAE checkpoints (the paper's released SAEs) as clipsteer SAEs.

A released SAE is a folder with `config.json` (Prisma's `VisionModelSAERunnerConfig` serialised by
`save_config`) and a weights file (e.g. `n_images_2600058.pt`) holding a plain state dict
    W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in].
Prisma's forward is exactly clipsteer's: optional per-token layer norm (`normalize_activations=
"layer_norm"`, x̃ = (x − μ)/(σ + 1e-5), unbiased σ, output de-normalised with σ and μ), encoder applied to
x̃ − b_dec, ReLU or TopK(k)+ReLU, decoder + b_dec. So the tensors are used as they are.

Config fields read (others are ignored):
- `d_in` (required); `d_sae`, or `expansion_factor` (d_sae = d_in·expansion_factor, as Prisma's
  __post_init__ computes it) — one of them is required, and both are checked against the weights;
- `activation_fn_str`: "relu" or "topk" (k from `activation_fn_kwargs.k`, or a top-level `k`);
- `architecture`: "standard" (or absent); "gated"/"jumprelu" have no Prisma inference code to match;
- `normalize_activations`: "layer_norm", "constant_norm_rescale", "none"/absent (older configs);
- hook: `hook_point` if present, else `blocks.{hook_point_layer}.{layer_subtype}`;
- tokens: `cls_token_only` → "cls", `use_patches_only` → "patches", otherwise "all";
- `model_name`.

The weights file is read with `torch.load(weights_only=True)`: a legacy checkpoint that pickles the
config object (`{"cfg": <VisionModelSAERunnerConfig>, "state_dict": ...}`) is refused, never unpickled.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from clipsteer.sae.config import SAEConfig, SAEConfigError
from clipsteer.sae.hook_names import site_from_hook_name
from clipsteer.sae.io import SAEFormatError, read_json, sae_from_weights
from clipsteer.sae.model import SparseAutoencoder

_NORMALIZATION = {"layer_norm": "layer_norm", "constant_norm_rescale": "token_rescale", "none": "none"}


def read_pt_state_dict(path: Path) -> dict[str, Tensor]:
    """A dict of tensors from a .pt file via torch.load(weights_only=True); anything else is refused."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SAEFormatError(
            f"{path}: refused to load: the file holds Python objects beyond plain tensors, and clipsteer never "
            f"unpickles them (torch.load(weights_only=True) said: {first_line}). Re-save just the tensors, "
            "e.g. torch.save(sae.state_dict(), path), or convert to safetensors") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise SAEFormatError(f"{path}: not a readable torch checkpoint ({error})") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise SAEFormatError(f"{path}: expected a state dict of tensors (W_enc, W_dec, b_enc, b_dec), got "
                             f"{type(data).__name__}")
    return data


def prisma_config(data: dict[str, Any], where: Path) -> SAEConfig:
    """Map Prisma's config.json fields onto an SAEConfig (see module docstring)."""
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
    tokens = "cls" if data.get("cls_token_only") else "patches" if data.get("use_patches_only") else "all"
    hook = data.get("hook_point")
    if hook is None and data.get("hook_point_layer") is not None and data.get("layer_subtype"):
        layer = data["hook_point_layer"]
        layer = layer[0] if isinstance(layer, list) and len(layer) == 1 else layer
        hook = f"blocks.{layer}.{data['layer_subtype']}"
    try:
        return SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=k, normalization=_NORMALIZATION[norm_key],
                         site=site_from_hook_name(hook), tokens=tokens, model=data.get("model_name"),
                         source_format="prisma")
    except SAEConfigError as error:
        raise SAEConfigError(f"{where}: {error}") from None


def load_prisma_sae(weights_path: str | Path, config_path: str | Path | None = None,
                    device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load a Prisma SAE: `weights_path` is the .pt file (or a folder holding exactly one), `config_path`
    defaults to `config.json` next to it. Returns an eval-mode SAE computing Prisma's forward."""
    weights_path = Path(weights_path)
    if weights_path.is_dir():
        candidates = sorted(weights_path.glob("*.pt"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"{weights_path}: expected exactly one .pt weights file, found "
                                    f"{[c.name for c in candidates]}")
        weights_path = candidates[0]
    config_path = Path(config_path) if config_path is not None else weights_path.parent / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; a Prisma SAE needs its config.json next to the weights")
    config = prisma_config(read_json(config_path), config_path)
    weights = read_pt_state_dict(weights_path)
    tensors = {name: weights[name] for name in ("W_enc", "W_dec", "b_enc", "b_dec") if name in weights}
    extra = sorted(set(weights) - set(tensors))
    if extra:
        raise SAEFormatError(f"{weights_path}: unexpected tensors {extra}; a Prisma standard SAE has "
                             "W_enc, W_dec, b_enc, b_dec")
    return sae_from_weights(config, tensors, weights_path, device)
