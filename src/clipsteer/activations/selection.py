"""Token selection on read: which stored rows a loader serves (all, CLS or patches).

Rows are image-major with T tokens per image, so whether row r is a CLS row is arithmetic
(token_index = first_token + r mod T) and needs no index file; loaders check the arithmetic against the
index files of the shards they read.
"""

from __future__ import annotations

import numpy as np

from clipsteer.activations.format import StoreError, StoreSpec
from clipsteer.models.sites import TokenSelection, check_tokens


def plan_filter(spec: StoreSpec, tokens: TokenSelection, source: object) -> str | None:
    """The filter to apply to stored rows to serve `tokens`: None (every row), "cls" or "patches"."""
    check_tokens(tokens)
    if tokens == "all" or tokens == spec.tokens:
        return None
    if spec.tokens == "all":
        if tokens == "patches" and spec.n_tokens_per_image < 2:
            raise StoreError(f"{source}: the model has no patch tokens (n_tokens_per_image=1)")
        return tokens
    raise StoreError(f"{source} holds only {spec.tokens!r} tokens (harvested with tokens={spec.tokens}); cannot "
                     f"serve tokens={tokens!r}. Harvest with --tokens all to select either later.")


def count_selected(spec: StoreSpec, filt: str | None, start: int, stop: int) -> int:
    """Number of rows in [start, stop) that pass `filt` (closed form, no I/O)."""
    n = stop - start
    if filt is None:
        return n
    t = spec.n_tokens_per_image
    n_cls = -(-stop // t) - (-(-start // t))   # multiples of t in [start, stop): the CLS rows of an all-token store
    return n_cls if filt == "cls" else n - n_cls


def selected_mask(spec: StoreSpec, filt: str | None, start: int, stop: int) -> np.ndarray | None:
    """Boolean mask over rows [start, stop) (None = every row)."""
    if filt is None:
        return None
    is_cls = np.arange(start, stop) % spec.n_tokens_per_image == 0
    return is_cls if filt == "cls" else ~is_cls


def select_image_tokens(x, spec: StoreSpec, filt: str | None):
    """[n, T, d] per-image rows → [n, T', d] with the filter applied (a view)."""
    if filt is None:
        return x
    return x[:, :1] if filt == "cls" else x[:, 1:]
