"""A closed-vocabulary word-level tokenizer in Hugging Face format (for toy and test CLIPs).

Layout: <pad>=0, <bos>=1, <unk>=2, <eos>=3, then the words. eos must not be 2: transformers' CLIP
text tower pools at the highest token id when `eos_token_id == 2` (legacy), and at the first eos
otherwise. Padding goes after eos, so with the causal mask no attention mask is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<unk>", "<eos>")
PAD_ID, BOS_ID, UNK_ID, EOS_ID = range(4)


def build_word_tokenizer(words: Sequence[str], context_length: int) -> PreTrainedTokenizerFast:
    """Lower-cased, whitespace/punctuation split; unknown words map to <unk>."""
    words = list(dict.fromkeys(w.lower() for w in words))
    clash = set(words) & set(SPECIAL_TOKENS)
    assert not clash, f"words clash with special tokens: {clash}"
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", BOS_ID), ("<eos>", EOS_ID)])
    core.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
        model_max_length=context_length, padding_side="right", truncation_side="right")
