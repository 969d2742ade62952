"""Small randomly initialised CLIPs of the real architecture, for tests and benchmarks."""

from __future__ import annotations

import torch
from transformers import CLIPConfig, CLIPModel

from clipsteer.models.backbone import Backbone
from clipsteer.models.preprocess import Preprocess
from clipsteer.models.word_tokenizer import EOS_ID, build_word_tokenizer

TINY_WORDS = ("a", "photo", "of", "the", "cat", "dog", "bird", "car", "red", "blue", "water", "land", "word")


def tiny_clip_config(n_layers: int = 3, d_model: int = 32, image_size: int = 32, patch_size: int = 8) -> CLIPConfig:
    """A CLIP config small enough for unit tests: (image_size / patch_size)² patches + CLS."""
    return CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         vocab_size=4 + len(TINY_WORDS), max_position_embeddings=16, eos_token_id=EOS_ID,
                         bos_token_id=1, pad_token_id=0),
        vision_config=dict(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size),
        projection_dim=16,
    )


def tiny_backbone(seed: int = 0, **config_kwargs: int) -> Backbone:
    """A random tiny CLIP with a word-level tokenizer over TINY_WORDS."""
    torch.manual_seed(seed)
    config = tiny_clip_config(**config_kwargs)
    model = CLIPModel(config).eval()
    tokenizer = build_word_tokenizer(TINY_WORDS, context_length=config.text_config.max_position_embeddings)
    preprocess = Preprocess.for_image_size(config.vision_config.image_size)
    return Backbone(model, tokenizer, preprocess, name=f"tiny-clip-seed{seed}", revision="random")


def random_vit_b32(seed: int = 0, tokenizer: bool = False) -> Backbone:
    """ViT-B/32 architecture (`CLIPConfig()` defaults) with random weights; optionally the word-level
    tokenizer over TINY_WORDS (so zero-shot heads work), else no tokenizer."""
    torch.manual_seed(seed)
    config = CLIPConfig()
    model = CLIPModel(config).eval()
    words = build_word_tokenizer(TINY_WORDS, context_length=config.text_config.max_position_embeddings) if tokenizer else None
    return Backbone(model, words, Preprocess.for_image_size(224), name=f"random-vit-b32-seed{seed}", revision="random")
