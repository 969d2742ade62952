"""A fingerprint of the world: sha256 over rendered sample images, captions, labels and patch counts.

Stored beside a trained checkpoint (world.json); a test re-renders and compares, so any change to the
generator that would invalidate the shipped toy CLIP fails loudly instead of silently skewing results.
"""

from __future__ import annotations

import dataclasses
import hashlib

from clipsteer.world.config import WorldConfig
from clipsteer.world.distribution import pretraining_scene
from clipsteer.world.generate import render_indices
from clipsteer.world.version import WORLD_VERSION

FINGERPRINT_SEED = 424242
FINGERPRINT_IMAGES = 96
# Knobs added after world 1.0 draw nothing at their default ("off") and render the same images: left out of the
# hashed config then, so world-1.0 checkpoints (the shipped one) keep their fingerprint.
ADDED_KNOBS: tuple[str, ...] = ("habitat_strength", "p_caption_background_type")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(WorldConfig)}
assert set(ADDED_KNOBS) <= set(_DEFAULTS), "ADDED_KNOBS names a field WorldConfig does not have"


def world_fingerprint(world_config: WorldConfig) -> str:
    batch = render_indices(lambda i: pretraining_scene(FINGERPRINT_SEED, i, world_config), range(FINGERPRINT_IMAGES), world_config)
    digest = hashlib.sha256(WORLD_VERSION.encode())
    knobs = {k: v for k, v in dataclasses.asdict(world_config).items() if not (k in ADDED_KNOBS and v == _DEFAULTS[k])}
    digest.update(repr(sorted(knobs.items())).encode())
    digest.update(batch.images.tobytes())
    digest.update(batch.patch_counts.tobytes())
    digest.update("\n".join(batch.captions).encode())
    for name in sorted(batch.labels):
        digest.update(name.encode())
        digest.update(batch.labels[name].tobytes())
    return digest.hexdigest()[:24]
