"""clipsteer: sparse autoencoders on CLIP's vision transformer, steerability, and feature suppression.

The short API (imported lazily, so `import clipsteer` is instant): `load`, `features`, `top_images`,
`steering`, `suppressing` (clipsteer.api), `open_dataset`, `Backbone`, `SparseAutoencoder`.
"""

from clipsteer.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __all__ = lazy_exports(__name__, {
    "load": "clipsteer.api",
    "features": "clipsteer.api",
    "top_images": "clipsteer.api",
    "steering": "clipsteer.api",
    "suppressing": "clipsteer.api",
    "open_dataset": "clipsteer.data.resolve",
    "Backbone": "clipsteer.models.backbone",
    "SparseAutoencoder": "clipsteer.sae.model",
})
