"""Activation harvesting, the on-disk ActivationStore, and its loaders (shuffled for training, ordered per image)."""

from clipsteer.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "FORMAT_VERSION": "clipsteer.activations.format",
    "SkippedImage": "clipsteer.activations.format",
    "StoreError": "clipsteer.activations.format",
    "StoreMetadata": "clipsteer.activations.format",
    "StoreMismatchError": "clipsteer.activations.format",
    "StoreSpec": "clipsteer.activations.format",
    "check_d_in": "clipsteer.activations.loaders",
    "open_ordered": "clipsteer.activations.loaders",
    "open_shuffled": "clipsteer.activations.loaders",
    "OrderedLoader": "clipsteer.activations.ordered",
    "ShuffledLoader": "clipsteer.activations.shuffled",
    "ActivationStore": "clipsteer.activations.store",
    "StoreWriter": "clipsteer.activations.writer",
})
