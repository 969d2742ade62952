"""A zero-shot classifier: class names × prompt templates → a text head; images → class logits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from clipsteer.data.protocol import ImageDataset
from clipsteer.models.backbone import Backbone

DEFAULT_TEMPLATES = ("a photo of a {}.",)


class ZeroShotClassifier:
    """CLIP's zero-shot rule: logits = logit_scale · cos(image embedding, mean prompt embedding per class).

    Interventions active around `logits(...)` (`Backbone.intervene`, `steer.steer`) apply to it, which is
    how suppression experiments measure their effect.
    """

    def __init__(self, backbone: Backbone, class_names: Sequence[str],
                 templates: Sequence[str] = DEFAULT_TEMPLATES) -> None:
        if len(class_names) < 2:
            raise ValueError(f"a zero-shot classifier needs at least two classes, got {list(class_names)}")
        self.backbone, self.class_names = backbone, tuple(class_names)
        self.head = backbone.zero_shot_head(list(class_names), list(templates))  # [C, E]

    @torch.no_grad()
    def logits(self, pixels: Tensor, images_per_batch: int = 128) -> Tensor:
        """pixels [N, 3, S, S] → logits float [N, C]."""
        emb = self.backbone.encode_image(pixels, images_per_batch)
        return self.backbone.zero_shot_logits(emb, self.head).float()

    def predict(self, pixels: Tensor, images_per_batch: int = 128) -> np.ndarray:
        """pixels [N, 3, S, S] → class indices int [N]."""
        return self.logits(pixels, images_per_batch).argmax(-1).cpu().numpy()

    def dataset_logits(self, dataset: ImageDataset, indices: Sequence[int] | None = None,
                       images_per_batch: int = 128) -> Tensor:
        """Logits float [N, C] of dataset images (all, or `indices`), loaded and preprocessed in batches."""
        order = list(range(len(dataset))) if indices is None else list(indices)
        out = [self.logits(self.backbone.pixels([dataset.load(i) for i in order[s:s + images_per_batch]]),
                           images_per_batch)
               for s in range(0, len(order), images_per_batch)]
        return torch.cat(out) if out else torch.zeros(0, len(self.class_names))
