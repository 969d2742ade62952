"""Before/after steering examples for feature cards: what clamping one feature does to CLIP's reading.

One probe image (the first image the steerability run steered) is read by CLIP as a softmax over the
run's concept vocabulary, clean and with feature j clamped to α on the run's tokens (delta form, the
SAE's error term kept) — the same intervention the steerability score averages over N images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from clipsteer.models.backbone import Backbone
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.steer.interventions import Edit, edit_fn
from clipsteer.steer.sae_adapter import SAEDictionary


@dataclass(frozen=True)
class SteeringExample:
    feature: int
    alpha: float
    labels: tuple[str, ...]
    before: tuple[float, ...]
    """Probability of each label on the clean image."""
    after: tuple[float, ...]
    """... and with the feature clamped to α."""


class ProbeSteering:
    """Clean and steered readings of one probe image, pixels [1, 3, S, S], against text [V, E]."""

    def __init__(self, backbone: Backbone, sae: SparseAutoencoder, site: str, pixels: Tensor, words: Sequence[str],
                 text: Tensor, alpha: float, tokens: str, temperature: float):
        assert pixels.ndim == 4 and pixels.shape[0] == 1, f"one probe image expected, got {tuple(pixels.shape)}"
        assert text.shape[0] == len(words), f"{text.shape[0]} text embeddings for {len(words)} words"
        self.backbone, self.site, self.pixels = backbone, site, pixels
        self.dictionary = SAEDictionary(sae)
        self.words, self.text = list(words), text.float()
        self.alpha, self.tokens, self.temperature = alpha, tokens, temperature
        self.clean = self._probs()

    @torch.no_grad()
    def _probs(self) -> Tensor:
        """[V] CLIP's softmax over the vocabulary for the probe image, under any active intervention."""
        emb = self.backbone.encode_image(self.pixels).float()  # [1, E]
        return torch.softmax(self.temperature * emb @ self.text.T, dim=-1)[0]

    def example(self, feature: int, n_labels: int = 5) -> SteeringExample:
        """The labels CLIP reads most after steering (and its clean top label), before and after."""
        edit = Edit((feature,), "clamp", self.alpha, self.tokens)  # type: ignore[arg-type]
        with self.backbone.intervene(self.site, edit_fn(self.dictionary, [edit])):
            steered = self._probs()
        shown = list(dict.fromkeys([*steered.topk(n_labels).indices.tolist(), int(self.clean.argmax())]))
        return SteeringExample(feature, self.alpha, tuple(self.words[v] for v in shown),
                               tuple(float(self.clean[v]) for v in shown), tuple(float(steered[v]) for v in shown))
