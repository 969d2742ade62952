"""Load SAELens-format SAEs (`cfg.json` + `sae_weights.safetensors`) as clipsteer SAEs.

SAELens' inference forward is
    x̃ = norm_in(x);  pre = (x̃ − b_dec·[apply_b_dec_to_input])·W_enc + b_enc;  f = act(pre)
    x̂ = norm_out(f·W_dec + b_dec)
with act = ReLU ("standard"), TopK(k) then ReLU ("topk", or the pre-v6 "standard" +
`activation_fn_str="topk"` with `activation_fn_kwargs.k`), or ReLU(pre)·[pre > θ_j] ("jumprelu",
tensor `threshold`; SAELens' BatchTopK SAEs are saved as JumpReLU for inference).

Mapping onto clipsteer (which always subtracts b_dec before encoding):
- `apply_b_dec_to_input=false` → b_enc ← b_enc + b_dec·W_enc, which gives the same pre-activation;
- `normalize_activations`: "none" → none; "layer_norm" → layer_norm (the same formula);
  "constant_norm_rescale" → token_rescale; "expected_average_only_in" → none, because SAELens' inference
  SAE applies no normalisation for it either (its scale is folded into saved weights at the end of training);
- the hook (`metadata.hook_name`, `meta.hook_name` or a top-level `hook_name`) → `site`.
Gated SAEs, `rescale_acts_by_decoder_norm`, `hook_z` reshaping and `finetuning_scaling_factor` have no
clipsteer equivalent and are refused with an error naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clipsteer.sae.config import SAEConfig, SAEConfigError
from clipsteer.sae.hook_names import site_from_hook_name
from clipsteer.sae.io import SAEFormatError, read_json, read_safetensors, sae_from_weights
from clipsteer.sae.model import SparseAutoencoder

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"
_NORMALIZATION = {"none": "none", "layer_norm": "layer_norm", "constant_norm_rescale": "token_rescale",
                  "expected_average_only_in": "none"}


def _hook_name(data: dict[str, Any]) -> str | None:
    for key in ("metadata", "meta"):
        nested = data.get(key)
        if isinstance(nested, dict) and nested.get("hook_name"):
            return nested["hook_name"]
    return data.get("hook_name")


def _model_name(data: dict[str, Any]) -> str | None:
    for key in ("metadata", "meta"):
        nested = data.get(key)
        if isinstance(nested, dict) and nested.get("model_name"):
            return nested["model_name"]
    return data.get("model_name")


def saelens_config(data: dict[str, Any], where: Path) -> tuple[SAEConfig, bool]:
    """(SAEConfig, apply_b_dec_to_input) from a SAELens cfg.json (see module docstring)."""
    missing = [name for name in ("d_in", "d_sae") if name not in data]
    if missing:
        raise SAEConfigError(f"{where}: missing required field(s) {missing} (SAELens cfg.json)")
    architecture = data.get("architecture", "standard")
    activation = data.get("activation_fn_str") or data.get("activation_fn") or "relu"
    kwargs = data.get("activation_fn_kwargs") or {}
    if architecture == "topk" or (architecture == "standard" and activation == "topk"):
        k = data.get("k", kwargs.get("k"))
        if not isinstance(k, int):
            raise SAEConfigError(f"{where}: a topk SAE needs an integer 'k' (or activation_fn_kwargs.k); got {k!r}")
        arch, k_value = "topk", k
    elif architecture == "standard":
        if activation != "relu":
            raise SAEConfigError(f"{where}: activation {activation!r} is not supported; expected 'relu' or 'topk'")
        arch, k_value = "relu", None
    elif architecture == "jumprelu":
        arch, k_value = "jumprelu", None
    else:
        raise SAEConfigError(f"{where}: architecture {architecture!r} is not supported; expected 'standard', "
                             "'topk' or 'jumprelu'")
    for flag in ("rescale_acts_by_decoder_norm",):
        if data.get(flag):
            raise SAEConfigError(f"{where}: {flag}=true is not supported (fold the decoder norms first)")
    if data.get("reshape_activations", "none") not in ("none", None):
        raise SAEConfigError(f"{where}: reshape_activations={data['reshape_activations']!r} is not supported")
    if data.get("finetuning_scaling_factor"):
        raise SAEConfigError(f"{where}: finetuning_scaling_factor=true is not supported")
    norm_key = data.get("normalize_activations") or "none"
    if norm_key not in _NORMALIZATION:
        raise SAEConfigError(f"{where}: normalize_activations {norm_key!r} is not supported; expected one of "
                             f"{sorted(_NORMALIZATION)}")
    apply_b_dec = data.get("apply_b_dec_to_input", True)
    if not isinstance(apply_b_dec, bool):
        raise SAEConfigError(f"{where}: apply_b_dec_to_input must be true or false, got {apply_b_dec!r}")
    try:
        config = SAEConfig(d_in=data["d_in"], d_sae=data["d_sae"], architecture=arch, k=k_value,
                           normalization=_NORMALIZATION[norm_key], site=site_from_hook_name(_hook_name(data)),
                           model=_model_name(data), source_format="saelens")
    except SAEConfigError as error:
        raise SAEConfigError(f"{where}: {error}") from None
    return config, apply_b_dec


def load_saelens_sae(folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load `folder/cfg.json` + `folder/sae_weights.safetensors` as an eval-mode SAE with the same function."""
    folder = Path(folder)
    cfg_path = folder / CFG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CFG_NAME}; expected a SAELens SAE folder (cfg.json + {WEIGHTS_NAME})")
    config, apply_b_dec = saelens_config(read_json(cfg_path), cfg_path)
    weights_path = folder / WEIGHTS_NAME
    weights = read_safetensors(weights_path)
    expected = {"W_enc", "b_enc", "W_dec", "b_dec"} | ({"threshold"} if config.architecture == "jumprelu" else set())
    if set(weights) != expected:
        raise SAEFormatError(f"{weights_path}: tensors {sorted(weights)}; a SAELens {config.architecture} SAE has "
                             f"{sorted(expected)}")
    weights = {k: v.to(torch.float32) for k, v in weights.items()}
    if not apply_b_dec:
        if tuple(weights["W_enc"].shape) != (config.d_in, config.d_sae) or weights["b_dec"].shape != (config.d_in,):
            raise SAEFormatError(f"{weights_path}: W_enc {tuple(weights['W_enc'].shape)} / b_dec "
                                 f"{tuple(weights['b_dec'].shape)} do not match d_in={config.d_in}, d_sae={config.d_sae}")
        weights["b_enc"] = weights["b_enc"] + weights["b_dec"] @ weights["W_enc"]
    if "threshold" in weights:
        # ReLU(pre)·[pre > θ] is plain ReLU for any θ <= 0; clipsteer stores log θ, so use the smallest
        # positive float instead (it differs only for 0 < pre <= 1e-38).
        weights["threshold"] = weights["threshold"].clamp_min(torch.finfo(torch.float32).tiny)
    return sae_from_weights(config, weights, weights_path, device)
