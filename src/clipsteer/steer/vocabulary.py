"""Concept vocabularies for reading out what a steered image "means" to CLIP.

The paper's code used the 5000 most common English words. Offline, the model's own tokenizer gives a
good stand-in: a BPE merge list is learnt in order of pair frequency, so whole-word tokens (those
ending in `</w>`) taken in merge order approximate word frequency order. A word-level tokenizer
(the toy CLIP's) contributes its words in id order. A user's word list replaces either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from clipsteer.atomic import atomic_save_safetensors
from clipsteer.models.backbone import Backbone

END_OF_WORD = "</w>"


def vocabulary_from_tokenizer(tokenizer: PreTrainedTokenizerBase, size: int = 5000, min_length: int = 2) -> list[str]:
    """Whole alphabetic words from the tokenizer, most frequent first (BPE merge order / word-level id order)."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model["type"] == "BPE":
        candidates = []
        for merge in model["merges"]:
            left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
            token = left + right
            if token.endswith(END_OF_WORD):
                candidates.append(token[: -len(END_OF_WORD)])
    elif model["type"] == "WordLevel":
        candidates = [word for word, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    else:
        raise ValueError(f"cannot derive a vocabulary from a {model['type']} tokenizer; pass a word list file")
    special = set(tokenizer.all_special_tokens)
    words = [w for w in dict.fromkeys(candidates)
             if w not in special and w.isascii() and w.isalpha() and len(w) >= min_length]
    if not words:
        raise ValueError("the tokenizer yielded no whole-word tokens; pass a word list file")
    return words[:size]


def read_word_list(path: str | Path, size: int | None = None) -> list[str]:
    """One word (or phrase) per line; blank lines and '#' comments ignored; duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    lines = [line.strip() for line in path.read_text().splitlines()]
    words = list(dict.fromkeys(w for w in lines if w and not w.startswith("#")))
    if not words:
        raise ValueError(f"vocabulary file {path} holds no words (expected one per line)")
    return words[:size] if size else words


def text_embeddings(backbone: Backbone, words: Sequence[str], cache_dir: Path | None = None) -> Tensor:
    """Normalised embeddings [V, E] of the raw words (no prompt template, as in the paper's code).

    Cached per (model revision, word list) as safetensors when `cache_dir` is given.
    """
    key = hashlib.sha256(("\n".join(words) + f"|{backbone.name}|{backbone.revision}").encode()).hexdigest()[:16]
    cache_file = cache_dir / f"text_embeddings_{key}.safetensors" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        return load_file(cache_file)["embeddings"].to(backbone.device)
    emb = backbone.encode_text(list(words))
    if cache_file is not None:
        atomic_save_safetensors({"embeddings": emb}, cache_file)
    return emb

