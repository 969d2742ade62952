"""A class prompted under several names scores the best of them; one name per class is CLIP's plain rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipsteer.evaluate.zero_shot import ZeroShotClassifier


def test_a_class_scores_the_best_of_its_prompt_names(backbone) -> None:
    names = ("cat", "dog", "bird", "fish")
    plain = ZeroShotClassifier(backbone, names)
    grouped = ZeroShotClassifier(backbone, ("pet", "wild"), prompt_names=[("cat", "dog"), ("bird", "fish")])
    emb = torch.nn.functional.normalize(torch.randn(64, plain.head.shape[1]), dim=-1)
    per_name = plain.embedding_logits(emb)
    expected = torch.stack([per_name[:, :2].amax(1), per_name[:, 2:].amax(1)], dim=1)
    torch.testing.assert_close(grouped.embedding_logits(emb), expected)
    assert np.array_equal(grouped.predict_embeddings(emb), plain.predict_embeddings(emb) // 2)
    with pytest.raises(ValueError, match="a non-empty list of names for each of the 2 classes"):
        ZeroShotClassifier(backbone, ("pet", "wild"), prompt_names=[("cat",)])
