"""Image datasets behind one protocol (`ImageDataset`): image folders, the synthetic world, ..."""

from clipsteer.data.folder import IMAGE_EXTENSIONS, ImageFolder, read_rgb, to_rgb
from clipsteer.data.protocol import ImageDataset, ImageReadError, image_name
from clipsteer.data.resolve import open_dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageDataset", "ImageFolder", "ImageReadError", "image_name", "open_dataset",
           "read_rgb", "to_rgb"]
