"""Concept vocabularies for reading out what a steered image "means" to CLIP.

The paper's code used the 5000 most common English words. Offline, the model's own tokenizer gives a
good stand-in: a BPE merge list is learnt in order of pair frequency, so whole-word tokens (those
ending in `</w>`) taken in merge order approximate word frequency order. A word-level tokenizer
(the toy CLIP's) contributes its words in id order.

An image source may also know what its images can show: a dataset implementing
`clipsteer.data.protocol.ConceptAnnotated` (the synthetic world: its caption phrases, each with the
ground-truth factors it names) supplies its own vocabulary. `open_vocabulary` picks, by a spec string:
- a path: a word-list file (one concept per line; optionally `concept<TAB>factor,factor`),
- `tokenizer`: whole words of the model's tokenizer (the default for real CLIP: the paper's 5000 words),
- `images`: the image source's own vocabulary (the default whenever the source has one).
A user's file replaces either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from clipsteer.atomic import atomic_save_safetensors, atomic_write_text
from clipsteer.data.protocol import ConceptAnnotated
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


@dataclass(frozen=True)
class ConceptVocabulary:
    """Concepts to read out, and (when known) the ground-truth factor names each one names."""

    concepts: tuple[str, ...]
    factors: tuple[frozenset[str], ...] | None = None
    source: str = ""
    """What it came from: `tokenizer`, `images:<dataset spec>` or a file path."""

    def __post_init__(self) -> None:
        if not self.concepts:
            raise ValueError(f"vocabulary {self.source!r} is empty")
        if self.factors is not None and len(self.factors) != len(self.concepts):
            raise ValueError(f"vocabulary {self.source!r}: {len(self.factors)} factor sets for "
                             f"{len(self.concepts)} concepts")

    def __len__(self) -> int:
        return len(self.concepts)


VOCABULARY_CHOICES = "a word-list file path, 'tokenizer' or 'images'"


def open_vocabulary(spec: str | None, backbone: Backbone, images: Any = None, size: int | None = None,
                    images_spec: str = "") -> ConceptVocabulary:
    """The vocabulary named by `spec` (see the module docstring); None: the image source's own if it has one."""
    if spec is None:
        spec = "images" if isinstance(images, ConceptAnnotated) else "tokenizer"
    if spec == "tokenizer":
        if backbone.tokenizer is None:
            raise ValueError(f"{backbone.name} has no tokenizer: give --vocabulary as {VOCABULARY_CHOICES}")
        return ConceptVocabulary(tuple(vocabulary_from_tokenizer(backbone.tokenizer, size or 5000)),
                                 source="tokenizer")
    if spec == "images":
        if not isinstance(images, ConceptAnnotated):
            raise ValueError(f"--vocabulary images: the image source {images_spec!r} has no concept vocabulary; "
                             f"give {VOCABULARY_CHOICES}")
        pairs = list(images.concept_vocabulary())[:size]
        return ConceptVocabulary(tuple(p for p, _ in pairs), tuple(frozenset(f) for _, f in pairs),
                                 source=f"images:{images_spec}")
    return read_vocabulary_file(spec, size)


def read_vocabulary_file(path: str | Path, size: int | None = None) -> ConceptVocabulary:
    """`concept` or `concept<TAB>factor,factor` per line; '#' comments and blank lines ignored; duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path} (expected {VOCABULARY_CHOICES})")
    entries: dict[str, frozenset[str] | None] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        concept, tab, factors = line.partition("\t")
        entries.setdefault(concept.strip(), frozenset(f.strip() for f in factors.split(",") if f.strip())
                           if tab else None)
    if not entries:
        raise ValueError(f"vocabulary file {path} holds no concepts (expected one per line)")
    items = list(entries.items())[:size]
    with_factors = [f is not None for _, f in items]
    if any(with_factors) and not all(with_factors):
        raise ValueError(f"vocabulary file {path}: give factors for every concept or for none")
    return ConceptVocabulary(tuple(c for c, _ in items),
                             tuple(f for _, f in items) if all(with_factors) else None,  # type: ignore[misc]
                             source=str(path))


def write_vocabulary_file(vocabulary: ConceptVocabulary, path: str | Path) -> None:
    """The inverse of `read_vocabulary_file` (so a generated vocabulary can be edited and passed back)."""
    lines = [c if vocabulary.factors is None else f"{c}\t{','.join(sorted(f))}"
             for c, f in zip(vocabulary.concepts, vocabulary.factors or [None] * len(vocabulary), strict=True)]
    atomic_write_text(path, "\n".join(lines) + "\n")
