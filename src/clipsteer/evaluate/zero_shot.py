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

    A class may be prompted under several names (`prompt_names[c]`, e.g. the world's shape groups, or a
    label value that stands for several words); it then scores the best of its names. Interventions
    active around `logits(...)` (`Backbone.intervene`, `steer.steer`) apply to it, which is how
    suppression experiments measure their effect.
    """

    def __init__(self, backbone: Backbone, class_names: Sequence[str],
                 templates: Sequence[str] = DEFAULT_TEMPLATES,
                 prompt_names: Sequence[Sequence[str]] | None = None) -> None:
        if len(class_names) < 2:
            raise ValueError(f"a zero-shot classifier needs at least two classes, got {list(class_names)}")
        prompt_names = [(name,) for name in class_names] if prompt_names is None else prompt_names
        if len(prompt_names) != len(class_names) or any(len(names) == 0 for names in prompt_names):
            raise ValueError(f"prompt_names: expected a non-empty list of names for each of the {len(class_names)} "
                             f"classes, got {list(map(list, prompt_names))}")
        self.backbone, self.class_names = backbone, tuple(class_names)
        self.class_of = torch.tensor([c for c, names in enumerate(prompt_names) for _ in names])  # [P]
        self.head = backbone.zero_shot_head([n for names in prompt_names for n in names], list(templates))  # [P, E]

    @torch.no_grad()
    def embedding_logits(self, embeddings: Tensor) -> Tensor:
        """Image embeddings [N, E] → class logits float [N, C] (the best of each class's prompt names)."""
        per_name = self.backbone.zero_shot_logits(embeddings.to(self.head.device), self.head)  # [N, P]
        if len(self.class_of) == len(self.class_names):  # one name per class: the plain rule
            return per_name.float()
        index = self.class_of.to(per_name.device).expand_as(per_name)
        out = per_name.new_full((len(per_name), len(self.class_names)), float("-inf"))
        return out.scatter_reduce(1, index, per_name, reduce="amax").float()

    def predict_embeddings(self, embeddings: Tensor) -> np.ndarray:
        """Image embeddings [N, E] → class indices int [N]."""
        return self.embedding_logits(embeddings).argmax(-1).cpu().numpy()

    @torch.no_grad()
    def logits(self, pixels: Tensor, images_per_batch: int = 128) -> Tensor:
        """pixels [N, 3, S, S] → logits float [N, C]."""
        return self.embedding_logits(self.backbone.encode_image(pixels, images_per_batch))

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
