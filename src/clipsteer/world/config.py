"""`WorldConfig`: every knob of the pretraining distribution, each structure with its strength.

The three built-in structures (see `clipsteer.world` for the full story):
- Waterbirds-like: `background_strength` = P(a WATER_SHAPES shape is on water) = P(a LAND_SHAPES shape
  is on land). Other shapes are on either family with probability 1/2. Within the family the background
  type is uniform, unless `habitat_strength` > 0: then a WATER/LAND shape on its own family is on its
  habitat (`factors.HABITATS`, e.g. star → sea) with probability habitat_strength + (1 − habitat_strength)/2,
  and captions name the type ("on the sea") instead of the family with `p_caption_background_type`.
  Both 0 (the defaults) are world 1.0, the shipped toy CLIP's.
- CelebA-like: `attribute_strength` = P(a RED_SHAPES shape is red) = P(a YELLOW_SHAPES shape is yellow);
  otherwise it takes the other attribute colour. Other shapes take any colour uniformly.
- Reading: `p_text` of object images carry a written word, which names the drawn shape with probability
  `p_text_match` (otherwise another class); `p_text_only` of all images are a word on a background
  with no object, captioned like an object ("a photo of a W") with probability `p_text_only_as_object`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldConfig:
    image_size: int = 64
    """Image side in pixels."""
    patch_size: int = 8  # the toy CLIP's patch: masks are reported on the (image_size/patch_size)² grid
    # object geometry (pixels / degrees)
    radius_min: float = 15.0
    radius_max: float = 24.0
    max_rotation: float = 25.0
    colour_jitter: int = 15
    # the three structures
    background_strength: float = 0.95
    habitat_strength: float = 0.0
    p_caption_background_type: float = 0.0
    attribute_strength: float = 0.97
    p_text: float = 0.35
    p_text_match: float = 0.9
    p_text_only: float = 0.2
    p_text_only_as_object: float = 0.7
    # how words look
    p_note: float = 0.5
    font_height_min: int = 11
    font_height_max: int = 16
    max_text_width: int = 58
    # captions: chance that each optional factor is mentioned
    p_caption_colour: float = 0.6
    p_caption_size: float = 0.25
    p_caption_background: float = 0.5
    p_caption_matching_word: float = 0.5  # a mismatched word is always mentioned

    def __post_init__(self) -> None:
        probs = {k: v for k, v in self.__dict__.items() if k.startswith("p_") or k.endswith("_strength")}
        for name, value in probs.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"WorldConfig.{name}={value} must be a probability in [0, 1]")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if not 4 <= self.radius_min <= self.radius_max <= self.image_size / 2:
            raise ValueError(f"need 4 <= radius_min <= radius_max <= image_size/2, got "
                             f"{self.radius_min}, {self.radius_max}")
        if not 7 <= self.font_height_min <= self.font_height_max <= self.image_size // 3:
            raise ValueError("font heights must satisfy 7 <= min <= max <= image_size/3")
        if not 20 <= self.max_text_width <= self.image_size - 4:
            raise ValueError(f"max_text_width must be in [20, image_size-4], got {self.max_text_width}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size
