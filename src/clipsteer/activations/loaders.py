"""Entry points for reading stores: `open_shuffled` (training) and `open_ordered` (per image).

    source = open_shuffled("acts/blocks.2.resid_post", tokens="patches")
    check_d_in(source, sae.d_in)
    for x in source.batches(tokens_per_batch=4096, seed=0, start=resumed_step):   # float32 [4096, d_in], endless
        ...
"""

from __future__ import annotations

from pathlib import Path

from clipsteer.activations.ordered import OrderedLoader
from clipsteer.activations.shuffled import DEFAULT_BUFFER_BYTES, DEFAULT_FIRST_WINDOW_ROWS, ShuffledLoader
from clipsteer.activations.store import ActivationStore
from clipsteer.models.sites import TokenSelection


def open_shuffled(store_dir: str | Path, tokens: TokenSelection = "all", buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                  prefetch: bool = True, first_window_rows: int = DEFAULT_FIRST_WINDOW_ROWS) -> ShuffledLoader:
    """A BatchSource over a store: every selected row once per epoch, deterministic per seed."""
    return ShuffledLoader(ActivationStore.open(store_dir), tokens, buffer_bytes=buffer_bytes, prefetch=prefetch,
                          first_window_rows=first_window_rows)


def open_ordered(store_dir: str | Path, tokens: TokenSelection = "all") -> OrderedLoader:
    """Per-image access to a store, in harvest order."""
    return OrderedLoader(ActivationStore.open(store_dir), tokens)


def check_d_in(source: ShuffledLoader | OrderedLoader | ActivationStore | str | Path, d_in: int,
               what: str = "SAE") -> None:
    """Raise ValueError when a store's rows (width d_model) cannot feed a model expecting `d_in`."""
    store = source if isinstance(source, ActivationStore) else (
        source.store if isinstance(source, ShuffledLoader | OrderedLoader) else ActivationStore.open(source))
    if store.d_model != d_in:
        spec = store.meta.spec
        raise ValueError(f"{store.directory}: the store holds d_model={store.d_model} activations "
                         f"({spec.model_name} at {spec.site}) but the {what} expects d_in={d_in}; use an {what} "
                         f"trained for this model and site, or harvest the matching site")
