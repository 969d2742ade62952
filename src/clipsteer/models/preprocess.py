"""The model's own image preprocessing: resize shortest edge, centre crop, scale to [0,1], normalise.

Read from a checkpoint's `preprocessor_config.json` (CLIPImageProcessor format) so a checkpoint
carries its own pipeline: OpenAI CLIP uses 224 px with CLIP's mean/std; the toy CLIP uses 64 px with
its own constants. Implemented with PIL + torch (no torchvision, which does not import beside the
CPU torch build used here).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipsteer.data.folder import read_rgb, to_rgb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageLike = Image.Image | str | Path


@dataclass(frozen=True)
class Preprocess:
    """Resize (shortest edge) → centre crop → [0, 1] → (x − mean) / std."""

    crop_size: int
    resize_shortest: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resample: int = Image.Resampling.BICUBIC

    def __post_init__(self) -> None:
        assert self.resize_shortest >= self.crop_size > 0, "resize must be at least the crop size"
        assert len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0

    @classmethod
    def for_image_size(cls, image_size: int) -> Preprocess:
        """CLIP's standard pipeline for a model whose input is `image_size` px."""
        return cls(crop_size=image_size, resize_shortest=image_size)

    @classmethod
    def from_hf_file(cls, path: Path, image_size: int) -> Preprocess:
        """Parse a CLIPImageProcessor `preprocessor_config.json`; fields it lacks take CLIP defaults."""
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot parse {path}: {err}") from err
        size = config.get("size", image_size)
        shortest = size.get("shortest_edge", image_size) if isinstance(size, dict) else int(size)
        crop = config.get("crop_size", image_size)
        crop = crop.get("height", image_size) if isinstance(crop, dict) else int(crop)
        if crop != image_size:
            raise ValueError(f"{path}: crop size {crop} does not match the model's image size {image_size}")
        return cls(
            crop_size=crop,
            resize_shortest=shortest if config.get("do_resize", True) else crop,
            mean=tuple(config.get("image_mean", CLIP_MEAN)),  # type: ignore[arg-type]
            std=tuple(config.get("image_std", CLIP_STD)),  # type: ignore[arg-type]
            resample=int(config.get("resample", Image.Resampling.BICUBIC)),
        )

    def to_hf_dict(self) -> dict:
        return {
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": True, "size": {"shortest_edge": self.resize_shortest},
            "do_center_crop": True, "crop_size": {"height": self.crop_size, "width": self.crop_size},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(self.mean), "image_std": list(self.std), "resample": self.resample,
            "do_convert_rgb": True,
        }

    def __call__(self, images: Sequence[ImageLike] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images → float32 pixels [B, 3, crop, crop].

        Accepts a sequence of PIL images or file paths (any mode), or a uint8 batch [B, H, W, 3]; a
        uint8 batch already at the crop size skips resampling (the synthetic world's fast path).
        """
        if isinstance(images, np.ndarray | torch.Tensor):
            batch = torch.as_tensor(images)
            if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != torch.uint8:
                raise ValueError(f"expected a uint8 image batch of shape [B, H, W, 3], got "
                                 f"{tuple(batch.shape)} {batch.dtype}")
            if batch.shape[1] == batch.shape[2] == self.crop_size == self.resize_shortest:
                return self._normalise(batch)
            images = [Image.fromarray(a) for a in batch.numpy()]
        if len(images) == 0:
            raise ValueError("no images to preprocess")
        arrays = [np.asarray(self._resize_crop(self._as_rgb(img))) for img in images]
        return self._normalise(torch.from_numpy(np.stack(arrays)))

    def _as_rgb(self, img: ImageLike) -> Image.Image:
        if isinstance(img, str | Path):
            return read_rgb(Path(img))
        if not isinstance(img, Image.Image):
            raise TypeError(f"expected a PIL image or a file path, got {type(img).__name__}")
        return to_rgb(img)

    def _resize_crop(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        short, long = min(w, h), max(w, h)
        new_long = int(self.resize_shortest * long / short)  # floor, as CLIP's processor does
        new_w, new_h = (self.resize_shortest, new_long) if w <= h else (new_long, self.resize_shortest)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), resample=self.resample)
        left, top = (new_w - self.crop_size) // 2, (new_h - self.crop_size) // 2
        return img.crop((left, top, left + self.crop_size, top + self.crop_size))

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] → float32 [B, 3, H, W]."""
        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std
