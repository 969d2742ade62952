"""Image datasets behind one protocol (`ImageDataset`): image folders, the synthetic world, ..."""

from clipsteer.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "IMAGE_EXTENSIONS": "clipsteer.data.folder",
    "ImageFolder": "clipsteer.data.folder",
    "read_rgb": "clipsteer.data.folder",
    "to_rgb": "clipsteer.data.folder",
    "ImageDataset": "clipsteer.data.protocol",
    "ImageReadError": "clipsteer.data.protocol",
    "image_name": "clipsteer.data.protocol",
    "open_dataset": "clipsteer.data.resolve",
})
