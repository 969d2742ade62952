"""Controls for steerability: what does "steerable" look like when the directions mean nothing?

- `random_directions_like(sae)` — **the null reported beside every result**: an untrained SAE of the
  same config (same width, architecture, input normalisation; decoder rows are random unit
  directions) steered in the *trained* model with the same clamp. Whatever fraction of it is
  "steerable" is what the metric gives for directions that were not learnt from the data.
- `random_vision_like(backbone)` — a labelled *diagnostic*, not a null: the vision tower and
  projection re-initialised, the trained text tower kept. Its image embeddings are nearly identical
  across images and unaligned with the text space, so its score is set by the geometry of the text
  vocabulary alone (see the calibration notes); it is reported, never compared against.
"""

from __future__ import annotations

import dataclasses

import torch

from clipsteer.models.backbone import Backbone
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.model import SparseAutoencoder


def random_directions_like(config: SAEConfig, seed: int = 0, device: torch.device | str = "cpu") -> SparseAutoencoder:
    """An untrained SAE with `config` whose decoder rows are isotropic random unit directions
    (W_enc = W_decᵀ as at initialisation), in eval mode.

    BatchTopK's inference threshold is only set by training; the null uses the TopK rule with the
    same k instead (the steering clamp does not depend on the encoder anyway, only on the codes).
    """
    if config.architecture == "batchtopk":
        config = dataclasses.replace(config, architecture="topk")
    generator = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(config)
    directions = torch.randn(config.d_sae, config.d_in, generator=generator)
    directions /= directions.norm(dim=1, keepdim=True)
    with torch.no_grad():
        sae.W_dec.copy_(directions)
        sae.W_enc.copy_(directions.T)
    return sae.to(device).eval()


def random_vision_like(backbone: Backbone, seed: int = 0) -> Backbone:
    """The re-initialised-vision diagnostic: fresh vision tower and projection, same text tower."""
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
