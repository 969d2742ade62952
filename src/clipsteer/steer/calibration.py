"""The paper's steering constants, translated by what they mean rather than copied as numbers.

- Temperature τ = 100 in the paper's code *is* CLIP ViT-B/32's own logit scale, so the default τ here
  is the model's logit scale (≈ 22 on the toy CLIP, 100 on real CLIP): the readout is as sharp as the
  model's own zero-shot head.
- α = 150 clamps a feature in layer-normed units. A layer-normed token (the SAE's input normalisation,
  unbiased std) has norm ‖x̃‖ = √(d − 1), 27.7 on ViT-B/32, so α = 150 is 5.42 × the whole token. The
  default clamp is that same multiple of this model's ‖x̃‖: α = 5.42·√(d − 1), exactly 150 at d = 768
  and ≈ 61 at the toy's d = 128. `--alpha 150` gives the paper's number as is.
- The α of the strength curves and of the α sweep are written in the paper's units and scaled by the
  same factor α / 150, so that `--alpha 150` reproduces every paper number literally.
Raw-unit neuron clamps (the paper's neuron baseline) use the same absolute α.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_ALPHA = 150.0
PAPER_D_MODEL = 768  # CLIP ViT-B/32
PAPER_TEMPERATURE = 100.0
PAPER_CURVE_ALPHAS: tuple[float, ...] = (-20.0, -5.0, 0.0, 5.0, 10.0, 20.0, 50.0, 150.0)


def layer_normed_norm(d_model: int) -> float:
    """‖x̃‖ of any token after the SAE's layer norm (unbiased std over d): √(d − 1)."""
    if d_model < 2:
        raise ValueError(f"d_model must be at least 2, got {d_model}")
    return math.sqrt(d_model - 1)


PAPER_RELATIVE_ALPHA = PAPER_ALPHA / layer_normed_norm(PAPER_D_MODEL)  # ≈ 5.416


@dataclass(frozen=True)
class SteeringConstants:
    """The constants one steerability run uses, with what they mean on this model."""

    alpha: float
    """Absolute clamp (layer-normed units for SAE features, raw units for raw neurons)."""
    alpha_relative: float
    """α / ‖x̃‖: the clamp as a multiple of the layer-normed token norm (paper: 5.42)."""
    temperature: float
    """τ of the readout softmax."""
    logit_scale: float
    """The model's own logit scale (the meaning of the paper's τ = 100)."""
    d_model: int

    @property
    def alpha_scale(self) -> float:
        """The factor that maps the paper's α values to this run's (α / 150)."""
        return self.alpha / PAPER_ALPHA

    def translate(self, paper_alpha: float) -> float:
        """A clamp written in the paper's units (e.g. a strength-curve α) → this run's absolute α."""
        return paper_alpha * self.alpha_scale


def steering_constants(d_model: int, logit_scale: float, alpha: float | None = None,
                       relative_alpha: float = PAPER_RELATIVE_ALPHA,
                       temperature: float | None = None) -> SteeringConstants:
    """Resolve α (absolute if given, else `relative_alpha`·‖x̃‖) and τ (given, else the logit scale)."""
    norm = layer_normed_norm(d_model)
    if alpha is None:
        if not relative_alpha > 0:
            raise ValueError(f"relative_alpha must be positive, got {relative_alpha}")
        alpha = relative_alpha * norm
    if temperature is None:
        temperature = logit_scale
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return SteeringConstants(alpha=float(alpha), alpha_relative=float(alpha) / norm, temperature=float(temperature),
                             logit_scale=float(logit_scale), d_model=d_model)
