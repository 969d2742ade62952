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
- `rescale_acts_by_decoder_norm=true` (TopK; SAELens' training default, and the flag stays set in what
  `save_inference_model` writes even though it already folded the norms): SAELens computes
  f = TopK(pre·‖W_dec_j‖), x̂ = (f/‖W_dec_j‖)·W_dec + b_dec, which is exactly the plain TopK SAE with
  W_enc[:, j]·n_j, b_enc[j]·n_j, W_dec[j]/n_j (n_j = ‖W_dec_j‖). That fold is applied at load time (on
  already-unit rows it changes nothing), and codes equal SAELens' codes;
- the hook (`metadata.hook_name`, `meta.hook_name` or a top-level `hook_name`) → `site`; a hook that is
  not a clipsteer site loads with an `UnknownSiteWarning`.
Gated SAEs, `hook_head_index` (an SAE on one attention head), `hook_z` reshaping and
`finetuning_scaling_factor` have no clipsteer equivalent and are refused with an error naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from clipsteer.sae.config import SAEConfig, SAEConfigError
from clipsteer.sae.hook_names import site_from_foreign_hook
from clipsteer.sae.io import SAEFormatError, check_weights, read_json, read_safetensors, sae_from_weights
from clipsteer.sae.model import SparseAutoencoder

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"
_NORMALIZATION = {"none": "none", "layer_norm": "layer_norm", "constant_norm_rescale": "token_rescale",
                  "expected_average_only_in": "none"}


def _metadata(data: dict[str, Any], field: str) -> Any:
    """A field of SAELens' metadata block (`metadata` in v6, `meta` in some releases, top level before)."""
    for key in ("metadata", "meta"):
        nested = data.get(key)
        if isinstance(nested, dict) and nested.get(field) is not None:
            return nested[field]
    return data.get(field)


@dataclass(frozen=True)
class SAELensLayout:
    """How a SAELens file's tensors map onto clipsteer's forward (see module docstring)."""

    apply_b_dec_to_input: bool
    rescale_acts_by_decoder_norm: bool


def saelens_config(data: dict[str, Any], where: Path) -> tuple[SAEConfig, SAELensLayout]:
    """(SAEConfig, layout) from a SAELens cfg.json (see module docstring)."""
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
    rescale = bool(data.get("rescale_acts_by_decoder_norm", False))
    if rescale and arch != "topk":
        raise SAEConfigError(f"{where}: rescale_acts_by_decoder_norm=true is only defined for topk SAEs, "
                             f"not {architecture!r}")
    if _metadata(data, "hook_head_index") is not None:
        raise SAEConfigError(f"{where}: hook_head_index={_metadata(data, 'hook_head_index')!r} (an SAE on one "
                             "attention head) is not supported; clipsteer SAEs read whole residual-width sites")
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
                           normalization=_NORMALIZATION[norm_key],
                           site=site_from_foreign_hook(_metadata(data, "hook_name"), where),
                           model=_metadata(data, "model_name"), source_format="saelens")
    except SAEConfigError as error:
        raise SAEConfigError(f"{where}: {error}") from None
    return config, SAELensLayout(apply_b_dec, rescale)


def load_saelens_sae(folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load `folder/cfg.json` + `folder/sae_weights.safetensors` as an eval-mode SAE with the same function."""
    folder = Path(folder)
    cfg_path = folder / CFG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CFG_NAME}; expected a SAELens SAE folder (cfg.json + {WEIGHTS_NAME})")
    config, layout = saelens_config(read_json(cfg_path), cfg_path)
    weights_path = folder / WEIGHTS_NAME
    weights = read_safetensors(weights_path)
    expected = {"W_enc", "b_enc", "W_dec", "b_dec"} | ({"threshold"} if config.architecture == "jumprelu" else set())
    if set(weights) != expected:
        raise SAEFormatError(f"{weights_path}: tensors {sorted(weights)}; a SAELens {config.architecture} SAE has "
                             f"{sorted(expected)}")
    weights = {k: v.to(torch.float32) for k, v in weights.items()}
    check_weights(weights, config, weights_path)  # shapes, before any arithmetic on them
    if not layout.apply_b_dec_to_input:
        weights["b_enc"] = weights["b_enc"] + weights["b_dec"] @ weights["W_enc"]
    if layout.rescale_acts_by_decoder_norm:
        weights = fold_decoder_norms(weights, weights_path)
    if "threshold" in weights:
        # ReLU(pre)·[pre > θ] is plain ReLU for any θ <= 0; clipsteer stores log θ, so use the smallest
        # positive float instead (it differs only for 0 < pre <= 1e-38).
        weights["threshold"] = weights["threshold"].clamp_min(torch.finfo(torch.float32).tiny)
    return sae_from_weights(config, weights, weights_path, device)


def fold_decoder_norms(weights: dict[str, Tensor], where: Path) -> dict[str, Tensor]:
    """Scale feature j's encoder column and bias by n_j = ‖W_dec_j‖ and its decoder row by 1/n_j: the plain
    TopK SAE equal to SAELens' `rescale_acts_by_decoder_norm` forward (SAELens' own `fold_W_dec_norm`)."""
    norms = weights["W_dec"].norm(dim=-1)  # [d_sae]
    if not bool((norms > 0).all()):
        raise SAEFormatError(f"{where}: rescale_acts_by_decoder_norm=true but {int((norms == 0).sum())} decoder "
                             "rows are zero; their activations are undefined")
    return {**weights, "W_enc": weights["W_enc"] * norms, "b_enc": weights["b_enc"] * norms,
            "W_dec": weights["W_dec"] / norms[:, None]}
