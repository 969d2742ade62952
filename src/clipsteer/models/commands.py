"""`clipsteer inspect-model`: load a checkpoint and print what clipsteer sees in it."""

from __future__ import annotations

import json

import torch

from clipsteer.models.backbone import Backbone
from clipsteer.models.configs import InspectModelConfig
from clipsteer.models.sites import SITE_KINDS


def inspect_model(config: InspectModelConfig) -> dict:
    backbone = Backbone.from_pretrained(config.model, device=config.device)
    pixels = torch.zeros(1, 3, backbone.image_size, backbone.image_size, device=backbone.device)
    info = {
        "name": backbone.name, "revision": backbone.revision, "n_layers": backbone.n_layers,
        "d_model": backbone.d_model, "image_size": backbone.image_size, "grid": backbone.grid,
        "n_tokens": backbone.n_tokens, "embed_dim": backbone.embed_dim, "has_text": backbone.has_text,
        "logit_scale": round(backbone.logit_scale, 4), "site_kinds": list(SITE_KINDS),
        "example_site": f"blocks.{backbone.n_layers // 2}.resid_post",
        "embedding_norm": round(float(backbone.encode_image(pixels).norm()), 6),
    }
    if config.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>15}: {value}")
    return info
