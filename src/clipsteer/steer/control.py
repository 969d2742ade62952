"""The random-weights control for steering: what does "steerable" look like in an untrained network?"""

from __future__ import annotations

import torch

from clipsteer.models.backbone import Backbone


def random_vision_like(backbone: Backbone, seed: int = 0) -> Backbone:
    """The random-weights control: same architecture, fresh vision tower and projection, same text tower."""
    config = backbone.model.config
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = type(backbone.model)(config).to(backbone.device, backbone.dtype).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    if backbone.has_text:  # keep the trained text side so the readout vocabulary means the same
        model.text_model.load_state_dict(backbone.model.text_model.state_dict())
        model.text_projection.load_state_dict(backbone.model.text_projection.state_dict())
        model.logit_scale.data.copy_(backbone.model.logit_scale.data)
    return Backbone(model, backbone.tokenizer, backbone.preprocess, name=f"{backbone.name}+random-vision-seed{seed}",
                    revision=f"{backbone.revision}-random{seed}")
