"""The toy CLIP: a tiny Hugging Face `CLIPModel` config, the world's word-level tokenizer, and the
on-disk checkpoint layout.

Checkpoint folder (loads with `clipsteer.models.Backbone.from_pretrained` and plain `CLIPModel` /
`AutoTokenizer.from_pretrained`, offline):
    config.json, model.safetensors        CLIPModel.save_pretrained
    tokenizer.json, tokenizer_config.json  PreTrainedTokenizerFast over a tokenizers WordLevel model
    preprocessor_config.json              CLIPImageProcessor format: 64 px, mean 0.5, std 0.25
    world.json                            world version, world config, training config, fingerprint
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

from clipsteer.models.preprocess import Preprocess
from clipsteer.models.word_tokenizer import BOS_ID, EOS_ID, PAD_ID, build_word_tokenizer
from clipsteer.world.captions import CONTEXT_LENGTH, VOCABULARY
from clipsteer.world.config import WorldConfig
from clipsteer.world.configs import ToyClipArch

PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.25, 0.25, 0.25)
WORLD_FILE = "world.json"



def world_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the caption vocabulary: <pad>=0 <bos>=1 <unk>=2 <eos>=3, then words."""
    return build_word_tokenizer(VOCABULARY, context_length=CONTEXT_LENGTH)


def toy_clip_config(world: WorldConfig, arch: ToyClipArch) -> CLIPConfig:
    assert EOS_ID != 2, "transformers pools CLIP text at argmax(ids) when eos_token_id == 2"
    return CLIPConfig(
        text_config=dict(hidden_size=arch.text_width, intermediate_size=arch.mlp_ratio * arch.text_width,
                         num_hidden_layers=arch.text_layers, num_attention_heads=arch.heads,
                         vocab_size=4 + len(VOCABULARY), max_position_embeddings=CONTEXT_LENGTH,
                         eos_token_id=EOS_ID, bos_token_id=BOS_ID, pad_token_id=PAD_ID),
        vision_config=dict(hidden_size=arch.vision_width, intermediate_size=arch.mlp_ratio * arch.vision_width,
                           num_hidden_layers=arch.vision_layers, num_attention_heads=arch.heads,
                           image_size=world.image_size, patch_size=world.patch_size),
        projection_dim=arch.projection_dim,
    )


def preprocess_for(world: WorldConfig) -> Preprocess:
    return Preprocess(crop_size=world.image_size, resize_shortest=world.image_size, mean=PIXEL_MEAN, std=PIXEL_STD)


def tokenize(tokenizer: PreTrainedTokenizerFast, captions: list[str]) -> torch.Tensor:
    """int64 [N, CONTEXT_LENGTH]: <bos> words <eos> <pad>...; raises if a caption would be truncated."""
    enc = tokenizer(captions, padding="max_length", max_length=CONTEXT_LENGTH, truncation=False,
                    return_tensors="pt")
    ids = enc["input_ids"]
    if ids.shape[1] != CONTEXT_LENGTH:
        raise ValueError(f"a caption is longer than {CONTEXT_LENGTH} tokens: {max(captions, key=len)!r}")
    assert (ids == EOS_ID).any(dim=1).all(), "every caption must end with <eos>"
    return ids


def export_toy_clip(folder: Path, model: CLIPModel, world: WorldConfig, info: dict[str, Any]) -> None:
    """Write the HF folder plus world.json (`info` holds version, training config, fingerprint, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    world_tokenizer().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocess_for(world).to_hf_dict(), indent=2) + "\n")
    meta = {"world_config": dataclasses.asdict(world), **info}
    (folder / WORLD_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_world_info(folder: Path) -> dict[str, Any]:
    path = Path(folder) / WORLD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {WORLD_FILE}; it is not a toy-CLIP checkpoint of this world")
    return json.loads(path.read_text())


def world_config_of(folder: Path) -> WorldConfig:
    return WorldConfig(**read_world_info(folder)["world_config"])
