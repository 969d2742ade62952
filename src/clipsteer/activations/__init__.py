"""Activation harvesting, the on-disk ActivationStore, and its loaders (shuffled for training, ordered per image)."""

from clipsteer.activations.format import (
    FORMAT_VERSION,
    SkippedImage,
    StoreError,
    StoreMetadata,
    StoreMismatchError,
    StoreSpec,
)
from clipsteer.activations.loaders import check_d_in, open_ordered, open_shuffled
from clipsteer.activations.ordered import OrderedLoader
from clipsteer.activations.shuffled import ShuffledLoader
from clipsteer.activations.store import ActivationStore
from clipsteer.activations.writer import StoreWriter

__all__ = ["FORMAT_VERSION", "ActivationStore", "OrderedLoader", "ShuffledLoader", "SkippedImage", "StoreError",
           "StoreMetadata", "StoreMismatchError", "StoreSpec", "StoreWriter", "check_d_in", "open_ordered",
           "open_shuffled"]
