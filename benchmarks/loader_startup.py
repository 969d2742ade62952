"""Store loader start-up and steady speed, against the same rows served from RAM.

On one activation store, interleaved `--repeats` times (the machine may be shared):
- `ramp`: `open_shuffled(store)` as shipped (first windows ramp up from `first_window_rows`);
- `full-window`: the same loader without the ramp (`first_window_rows` = the buffer: the old behaviour);
- `in-RAM`: a `TensorSource` over rows already read into memory (reading them is not timed).
Each serves `--batches` batches of 4096 float32 rows while an SAE step of `--arch` at ×`--expansion`
runs on every batch (the consumer a trainer would be). Printed: time to the first batch, total time,
and the ratio total(loader) / total(in-RAM); medians over repeats. Nothing is asserted.

    python benchmarks/loader_startup.py --store /work/artifacts/acts/blocks.2.resid_post
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator

import torch

from clipsteer.activations import open_shuffled
from clipsteer.activations.shuffled import DEFAULT_BUFFER_BYTES
from clipsteer.activations.store import ActivationStore
from clipsteer.sae import SAEConfig, SAERecipe, SparseAutoencoder, TensorSource, TrainerConfig
from clipsteer.sae.updater import SAEUpdater

BATCH = 4096


def consume(make: Callable[[], Iterator[torch.Tensor]], n: int, step: Callable[[torch.Tensor], None]) -> tuple[float, float]:
    """(seconds to the first batch, seconds for all n batches, each followed by one training step)."""
    start = time.perf_counter()
    stream = make()
    first = None
    for i in range(n):
        x = next(stream)
        if i == 0:
            first = time.perf_counter() - start
        step(x)
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    assert first is not None
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", choices=["relu", "topk"], default="topk")
    parser.add_argument("--expansion", type=int, default=16)
    args = parser.parse_args()
    store = ActivationStore.open(args.store)
    d = store.d_model
    config = SAEConfig(d_in=d, d_sae=d * args.expansion, architecture=args.arch, k=32 if args.arch == "topk" else None)
    updater = SAEUpdater(SAERecipe("bench", config), SparseAutoencoder(config), TrainerConfig(progress=False))
    counter = iter(range(10**9))

    def step(x: torch.Tensor) -> None:
        updater.step(x, next(counter), 4e-4)

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ramp = open_shuffled(args.store)
    full = open_shuffled(args.store, first_window_rows=DEFAULT_BUFFER_BYTES)
    rows = store.read(0, min(store.n_rows, BATCH * args.batches * 2))
    in_ram = TensorSource(rows)
    print(f"{args.store}: {store.n_rows:,} rows, d={d}; windows of {ramp.window_rows:,} rows, ramp from "
          f"{ramp.first_window_rows:,}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    results: dict[str, list[tuple[float, float]]] = {"ramp": [], "full-window": [], "in-RAM": []}
    sources = {"ramp": ramp, "full-window": full, "in-RAM": in_ram}
    for r in range(args.repeats):
        for name in list(sources)[r % 3:] + list(sources)[:r % 3]:
            source = sources[name]
            results[name].append(consume(lambda s=source, r=r: s.batches(BATCH, seed=r), args.batches, step))
    ram_total = statistics.median(t for _, t in results["in-RAM"])
    for name, runs in results.items():
        first = statistics.median(f for f, _ in runs)
        total = statistics.median(t for _, t in runs)
        print(f"{name:12s} first batch {first * 1000:8.1f} ms   {args.batches} steps {total:7.2f} s   "
              f"÷ in-RAM {total / ram_total:5.2f}")
    print(f"peak RSS growth {(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024:.0f} MiB; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
