"""clipsteer: sparse autoencoders on CLIP's vision transformer, steerability, and feature suppression.

The short API (imported lazily, so `import clipsteer` is instant): `load`, `features`, `top_images`,
`steering`, `suppressing` (clipsteer.api), `open_dataset`, `Backbone`, `SparseAutoencoder`.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "clipsteer.api", "features": "clipsteer.api", "top_images": "clipsteer.api",
    "steering": "clipsteer.api", "suppressing": "clipsteer.api",
    "open_dataset": "clipsteer.data.resolve", "Backbone": "clipsteer.models.backbone",
    "SparseAutoencoder": "clipsteer.sae.model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clipsteer' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
