"""`clipsteer export SAE --format saelens|prisma`: write an SAE in another library's format.

SAELens (what `SAE.save_model` writes and `SAE.load_from_disk` reads):
    cfg.json                  {"architecture", "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input": true,
                               "normalize_activations", "reshape_activations": "none", ["k",
                               "rescale_acts_by_decoder_norm": false], "metadata": {"sae_lens_version": "6.0.0",
                               "model_name", "hook_name", ...}}
    sae_weights.safetensors   W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], threshold [d_sae]
ViT-Prisma (what `SparseAutoencoder.load_from_pretrained(weights.pt)` reads: a plain state dict, and
`VisionModelSAERunnerConfig.load_config(config.json)` beside it):
    config.json               Prisma's config fields (d_in, expansion_factor, activation_fn_str/kwargs,
                              normalize_activations, hook_point_layer + layer_subtype, token selection, model_name)
    weights.pt                torch.save({W_enc, W_dec, b_enc, b_dec}) — tensors only, nothing pickled

Mapping (the inverse of `clipsteer.sae.saelens` / `clipsteer.sae.prisma`): relu → "standard" (Prisma:
activation relu), topk → "topk" (Prisma: activation topk with k), jumprelu → SAELens "jumprelu" with
θ = exp(log θ), batchtopk → SAELens "jumprelu" with its one inference threshold for every feature (SAELens
itself saves BatchTopK SAEs that way). Normalisation: layer_norm → "layer_norm", token_rescale →
"constant_norm_rescale", none → "none"; a constant_scale SAE is folded first. Site `blocks.{l}.{kind}` →
hook `blocks.{l}.hook_{kind}`. What a format cannot express (Prisma: JumpReLU/BatchTopK, a d_sae that
is not a multiple of d_in, no site) is refused with a message that names it.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from clipsteer.atomic import atomic_directory, atomic_save_safetensors, atomic_write_bytes, atomic_write_json
from clipsteer.hub import is_hub_address
from clipsteer.models.sites import SITE_PATTERN
from clipsteer.sae.configs import ExportConfig, ExportFormat
from clipsteer.sae.hook_names import hook_name_from_site
from clipsteer.sae.io import inference_tensors
from clipsteer.sae.loading import load_any_sae
from clipsteer.sae.model import SparseAutoencoder

_SAELENS_NORMALIZATION = {"none": "none", "layer_norm": "layer_norm", "token_rescale": "constant_norm_rescale"}
PRISMA_WEIGHTS_NAME = "weights.pt"
SAELENS_LAYOUT_VERSION = "6.0.0"


class ExportError(ValueError):
    """An SAE that the chosen format cannot express (names the SAE and what is missing)."""


def _exportable(sae: SparseAutoencoder) -> SparseAutoencoder:
    return sae.folded() if sae.config.normalization == "constant_scale" else sae


def _exporter_tag() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"clipsteer {version('clipsteer')}"
    except PackageNotFoundError:
        return "clipsteer"


def saelens_files(sae: SparseAutoencoder) -> tuple[dict, dict[str, torch.Tensor]]:
    """(cfg.json contents, tensors) of `sae` in SAELens' layout."""
    sae = _exportable(sae)
    config = sae.config
    tensors = inference_tensors(sae)
    cfg: dict = {"d_in": config.d_in, "d_sae": config.d_sae, "dtype": "float32", "device": "cpu",
                 "apply_b_dec_to_input": True, "normalize_activations": _SAELENS_NORMALIZATION[config.normalization],
                 "reshape_activations": "none"}
    arch = sae.spec
    if arch.saelens_architecture is None:
        raise ExportError(f"a {config.architecture} SAE has no SAELens equivalent")
    cfg["architecture"] = arch.saelens_architecture
    if arch.exact_k_per_token:
        cfg |= {"k": config.k, "rescale_acts_by_decoder_norm": False}
    if arch.threshold == "batch":  # one threshold for all features; SAELens stores one per feature
        threshold = float(tensors["threshold"])
        if not math.isfinite(threshold):
            raise ExportError(f"this {config.architecture} SAE has no inference threshold yet (train it longer "
                              "than one step); SAELens would need one per feature")
        tensors["threshold"] = torch.full((config.d_sae,), max(threshold, 0.0))
    # sae_lens_version names the cfg.json layout: SAELens reads `metadata` only from files marked ≥ 6.0.
    cfg["metadata"] = {"sae_lens_version": SAELENS_LAYOUT_VERSION, "model_name": config.model,
                       "hook_name": _hook_name(config.site), "hook_head_index": None,
                       "exported_by": _exporter_tag(), "clipsteer_tokens": config.tokens}
    return cfg, tensors


def _hook_name(site: str | None) -> str | None:
    match = SITE_PATTERN.match(site) if site is not None else None
    return hook_name_from_site(site) if match and match["tower"] != "text" else site  # type: ignore[arg-type]


def export_saelens(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write `folder/cfg.json` + `folder/sae_weights.safetensors` (SAELens' `load_from_disk` reads it)."""
    cfg, tensors = saelens_files(sae)
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        atomic_save_safetensors(tensors, tmp / "sae_weights.safetensors")
        atomic_write_json(tmp / "cfg.json", cfg)
    return folder


def prisma_files(sae: SparseAutoencoder) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json contents, state dict) of `sae` in ViT-Prisma's layout."""
    sae = _exportable(sae)
    config = sae.config
    activation = sae.spec.prisma_activation
    if activation is None:
        raise ExportError(f"a {config.architecture} SAE has no ViT-Prisma equivalent (Prisma's standard SAE is "
                          "relu or topk); export it with --format saelens")
    if config.d_sae % config.d_in:
        raise ExportError(f"d_sae={config.d_sae} is not a multiple of d_in={config.d_in}; Prisma derives d_sae "
                          "from an integer expansion_factor")
    match = SITE_PATTERN.match(config.site or "")
    if match is None or match["tower"] == "text":
        raise ExportError(f"site {config.site!r} is not a clipsteer site; Prisma needs hook_point_layer and "
                          "layer_subtype")
    data = {
        "model_name": config.model or "unknown", "hook_point_layer": int(match["layer"]),
        "layer_subtype": f"hook_{match['kind']}", "hook_point_head_index": None, "d_in": config.d_in,
        "expansion_factor": config.d_sae // config.d_in, "architecture": "standard",
        "activation_fn_str": activation,
        "activation_fn_kwargs": {"k": config.k} if sae.spec.uses_k else {},
        "normalize_activations": _SAELENS_NORMALIZATION[config.normalization],
        "cls_token_only": config.tokens == "cls", "use_patches_only": config.tokens == "patches",
        "_device": "cpu", "_dtype": "float32", "log_to_wandb": False,
    }
    state = {name: tensor for name, tensor in inference_tensors(sae).items() if name != "threshold"}
    return data, state


def export_prisma(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write `folder/config.json` + `folder/weights.pt` (a plain state dict; Prisma's loader reads it)."""
    data, state = prisma_files(sae)
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in state.items()}, buffer)
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        atomic_write_bytes(tmp / PRISMA_WEIGHTS_NAME, buffer.getvalue())
        atomic_write_json(tmp / "config.json", data)
    return folder


EXPORTERS = {"saelens": export_saelens, "prisma": export_prisma}


def default_export_folder(sae: str | Path, format: ExportFormat) -> Path:
    """`<sae>_<format>` beside a local SAE; `<last part>_<format>` in the working folder for a Hub address."""
    text = str(sae).rstrip("/")
    if is_hub_address(text):
        return Path(f"{text.rsplit('/', 1)[-1]}_{format}")
    return Path(f"{text.removesuffix('.pt')}_{format}")



def export(config: ExportConfig) -> Path:
    """Load any SAE and write it in `config.format`; returns the folder written."""
    sae = load_any_sae(config.sae)
    out = config.out or default_export_folder(config.sae, config.format)
    try:
        folder = EXPORTERS[config.format](sae, out)
    except ExportError as error:
        raise ExportError(f"{config.sae}: {error}") from None
    print(f"{config.sae} → {folder} ({config.format})")
    return folder
