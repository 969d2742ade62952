"""The world's closed sets of factor values: shapes, colours, backgrounds, and the structured groups.

Index order here is the label encoding used everywhere (labels arrays, eval sets, captions): never
reorder without bumping `WORLD_VERSION` in `clipsteer.world.version`.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "moon", "arrow")

# Object colours (RGB). Blue and green are left out on purpose: they are the background families.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "yellow": (245, 215, 40),
    "orange": (245, 130, 20),
    "purple": (130, 50, 190),
    "pink": (250, 140, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

# Background types and the family ("water" or "land") each belongs to.
BACKGROUNDS: dict[str, str] = {"sea": "water", "pond": "water", "grass": "land", "sand": "land"}
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)
FAMILIES: tuple[str, ...] = ("water", "land")

SIZES: tuple[str, ...] = ("small", "big")  # caption words for the radius (below/above its midpoint)

# Waterbirds-like structure: each group of shapes is usually drawn on its own background family.
WATER_SHAPES: tuple[str, ...] = ("star", "moon")
LAND_SHAPES: tuple[str, ...] = ("cross", "arrow")

# CelebA-like structure: a localized attribute (the object's colour) goes with a group of shapes.
RED_SHAPES: tuple[str, ...] = ("heart", "triangle")
YELLOW_SHAPES: tuple[str, ...] = ("square", "circle")
ATTRIBUTE_COLOURS: tuple[str, str] = ("red", "yellow")  # the colour that goes with each group above

# Habitats: each Waterbirds-like shape's own background type within its family (as a seabird's ocean and a
# duck's lake are both "water"); used when `WorldConfig.habitat_strength` > 0.
HABITATS: dict[str, str] = {"star": "sea", "moon": "pond", "cross": "grass", "arrow": "sand"}

assert not set(WATER_SHAPES + LAND_SHAPES) & set(RED_SHAPES + YELLOW_SHAPES), "task shape groups overlap"
assert set(WATER_SHAPES + LAND_SHAPES + RED_SHAPES + YELLOW_SHAPES) <= set(SHAPES)
assert set(ATTRIBUTE_COLOURS) <= set(COLOURS)
assert set(HABITATS) == set(WATER_SHAPES + LAND_SHAPES) and set(HABITATS.values()) == set(BACKGROUNDS)
assert all(BACKGROUNDS[HABITATS[s]] == ("water" if s in WATER_SHAPES else "land") for s in HABITATS), \
    "each shape's habitat must belong to its own family"



def family_of(background: str) -> str:
    return BACKGROUNDS[background]
