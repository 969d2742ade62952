"""`clipsteer check STORE`: verify an activation store in full (checksums, sizes, finiteness).

    clipsteer check acts/blocks.8.resid_post

Opening a store already checks its metadata and every shard's size (cheap); this reads every byte:
each shard's SHA-256 against metadata.json and every row for NaN/inf. Exit status 0 when the store is
sound; otherwise one line naming the first bad file (exit status 2).
"""

from __future__ import annotations

from tqdm.auto import tqdm

from clipsteer.activations.configs import CheckConfig
from clipsteer.activations.store import ActivationStore


def check_store(config: CheckConfig) -> ActivationStore:
    store = ActivationStore.open(config.store)
    for i in tqdm(range(store.n_shards), desc="check", unit="shard", disable=not config.progress):
        store.verify_shard(i)
        store.check_finite(i)
    checked = ("checksums verified" if store.meta.shard_checksums is not None
               else "no checksums recorded (written by an older clipsteer): sizes and values checked only")
    print(f"check: {store.directory}: {store.n_shards} shards, {store.n_rows} rows, all finite; {checked}")
    return store
