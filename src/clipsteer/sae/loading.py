"""`load_any_sae(path)`: recognise clipsteer, SAELens and Prisma SAEs by their files and load them.

`path` may be a Hub address, `hf://org/repo[/subfolder]`, resolved through huggingface_hub's cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipsteer.hub import is_hub_address, resolve_hub_path
from clipsteer.sae.io import CONFIG_NAME, FORMAT, load_sae, read_json
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.sae.prisma import load_prisma_sae
from clipsteer.sae.saelens import CFG_NAME, load_saelens_sae


def load_any_sae(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """path: a clipsteer SAE folder, a SAELens folder (cfg.json), a Prisma folder (config.json and/or
    n_images_<N>.pt files) or a Prisma .pt file, locally or at hf://org/repo[/subfolder]. Returns an
    eval-mode SAE."""
    path = resolve_hub_path(path) if is_hub_address(path) else Path(path)
    if path.is_file() and path.suffix == ".pt":
        return load_prisma_sae(path, device=device)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not found; expected an SAE folder or a Prisma .pt file")
    if (path / CFG_NAME).is_file():
        return load_saelens_sae(path, device=device)
    config_path = path / CONFIG_NAME
    if config_path.is_file():
        data = read_json(config_path)   # invalid JSON is reported as such, naming the file
        if data.get("format") == FORMAT:
            return load_sae(path, device=device)
        if any(path.glob("*.pt")):
            return load_prisma_sae(path, device=device)
    elif any(path.glob("n_images_*.pt")):  # Prisma's trainer output; the config is pickled with the weights
        return load_prisma_sae(path, device=device)
    raise FileNotFoundError(f"{path}: no SAE found; expected config.json + sae.safetensors (clipsteer), cfg.json + "
                            "sae_weights.safetensors (SAELens) or config.json + a .pt file (Prisma)")
