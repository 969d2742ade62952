"""clipsteer's SAE format: a folder with `config.json` + `sae.safetensors`, written atomically.

config.json = {"format": "clipsteer-sae", "format_version": 1, <SAEConfig fields>}
sae.safetensors:
    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]   (float32)
    threshold [d_sae] (jumprelu) or [] (batchtopk: the inference threshold)
A `constant_scale` SAE is folded before saving (see `SparseAutoencoder.folded`), so every saved SAE
reads raw activations or normalises them per token itself. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from clipsteer.atomic import atomic_directory, atomic_save_safetensors, atomic_write_json
from clipsteer.errors import InputFormatError
from clipsteer.sae.architectures import spec
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.model import SparseAutoencoder

FORMAT = "clipsteer-sae"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "sae.safetensors"


class SAEFormatError(InputFormatError):
    """A file that is not a valid SAE in the expected format (names the file and what was expected)."""


def expected_shapes(config: SAEConfig) -> dict[str, tuple[int, ...]]:
    shapes = {"W_enc": (config.d_in, config.d_sae), "b_enc": (config.d_sae,),
              "W_dec": (config.d_sae, config.d_in), "b_dec": (config.d_in,)}
    threshold = spec(config.architecture).threshold
    if threshold is not None:
        shapes["threshold"] = (config.d_sae,) if threshold == "per_feature" else ()
    return shapes


def check_weights(weights: dict[str, Tensor], config: SAEConfig, where: str | Path) -> None:
    """Raise SAEFormatError naming any missing, unexpected or mis-shaped tensor."""
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise SAEFormatError(f"{where}: tensors {sorted(weights)} do not match a {config.architecture} SAE; "
                             f"missing {missing}, unexpected {unexpected} (expected {sorted(expected)})")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise SAEFormatError(f"{where}: {name} has shape {tuple(weights[name].shape)}, expected {shape} "
                                 f"for d_in={config.d_in}, d_sae={config.d_sae}")
        if not weights[name].is_floating_point():
            raise SAEFormatError(f"{where}: {name} has dtype {weights[name].dtype}, expected a floating-point tensor")


def sae_from_weights(config: SAEConfig, weights: dict[str, Tensor], where: str | Path,
                     device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Build an eval-mode SAE from inference tensors (names as in this module's docstring)."""
    check_weights(weights, config, where)
    sae = SparseAutoencoder(config, device=device)
    state = {name: weights[name].to(torch.float32) for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if spec(config.architecture).threshold == "per_feature":
        threshold = weights["threshold"].to(torch.float32)
        if not bool((threshold > 0).all()):
            raise SAEFormatError(f"{where}: JumpReLU thresholds must be positive (min {float(threshold.min())})")
        state["log_threshold"] = threshold.log()
    elif spec(config.architecture).threshold == "batch":
        state["batch_threshold"] = weights["threshold"].to(torch.float32)
    if config.normalization == "constant_scale":
        raise SAEFormatError(f"{where}: normalization 'constant_scale' must be folded into the weights before "
                             "saving; expected 'none', 'layer_norm' or 'token_rescale'")
    for name, value in state.items():
        if not bool(torch.isfinite(value).all()) and not (name == "batch_threshold" and math.isnan(float(value))):
            raise SAEFormatError(f"{where}: {name} contains non-finite values")
    sae.load_state_dict(state, strict=True)
    return sae.eval()


def inference_tensors(sae: SparseAutoencoder) -> dict[str, Tensor]:
    tensors = {name: getattr(sae, name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if spec(sae.architecture).threshold is not None:
        tensors["threshold"] = sae.threshold.detach()
    return {k: v.to(torch.float32) for k, v in tensors.items()}


def save_sae(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write `folder/config.json` + `folder/sae.safetensors` (the whole folder is replaced atomically)."""
    folder = Path(folder)
    ready = sae.folded() if sae.config.normalization == "constant_scale" else sae
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **ready.config.to_dict()}
    with atomic_directory(folder) as tmp:
        atomic_save_safetensors(inference_tensors(ready), tmp / WEIGHTS_NAME, metadata={"format": FORMAT})
        atomic_write_json(tmp / CONFIG_NAME, config)
    return folder


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SAEFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SAEFormatError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise SAEFormatError(f"{path}: not a readable safetensors file ({error})") from None


def load_sae(folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE saved by `save_sae` (eval mode)."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        hint = " (it has cfg.json: a SAELens SAE — use load_saelens_sae)" if (folder / "cfg.json").is_file() else ""
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; expected a clipsteer SAE folder{hint}")
    data = read_json(config_path)
    if data.get("format") != FORMAT:
        raise SAEFormatError(f"{config_path}: format {data.get('format')!r}, expected {FORMAT!r} (a Prisma "
                             "checkpoint's config.json has no 'format' field: use load_prisma_sae)")
    if data.get("format_version") != FORMAT_VERSION:
        raise SAEFormatError(f"{config_path}: format_version {data.get('format_version')!r}, this clipsteer reads "
                             f"version {FORMAT_VERSION}")
    fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
    config = SAEConfig.from_dict(fields, where=config_path)
    return sae_from_weights(config, read_safetensors(folder / WEIGHTS_NAME), folder / WEIGHTS_NAME, device)
