"""Shuffled-loader throughput vs what an SAE trainer consumes (d_in 768, expansion 16, batch 4096).

1. Writes a store of random fp16 rows at d=768 to a temporary directory (through StoreWriter, as a
   harvest would; the store is then in the OS page cache, so this measures the loader, not the disk).
2. Loader: rows/s of `open_shuffled(...).batches(4096, seed)` (float32 batches out), tokens=all and
   tokens=patches (filtering an all-token store with 50 tokens per image).
3. Trainer: a plain-torch ReLU SAE step (encode + decode + MSE + L1 + backward + Adam) at d_in 768,
   d_sae 12288, batch 4096, on this machine's CPU; rows/s = 4096 / step time.
4. End to end: the same step fed by the loader vs fed one fixed in-memory batch (loader overhead).
Each figure is the best of several interleaved runs (the machine may be shared). Prints the ratio
loader rows/s ÷ trainer rows/s (target ≥ 10). Nothing is asserted.

    python benchmarks/loader_throughput.py [--rows 262144] [--shard-rows 65536] [--steps 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from clipsteer.activations import open_shuffled
from clipsteer.activations.format import StoreSpec
from clipsteer.activations.writer import StoreWriter

D_IN, EXPANSION, BATCH, TOKENS_PER_IMAGE = 768, 16, 4096, 50


def write_random_store(directory: Path, n_rows: int, shard_rows: int) -> None:
    n_images = n_rows // TOKENS_PER_IMAGE
    spec = StoreSpec(model_name="benchmark", model_revision="random", model_dtype="float32",
                     site="blocks.8.resid_post", tokens="all", dtype="float16", d_model=D_IN,
                     n_tokens_per_image=TOKENS_PER_IMAGE, first_token=0, shard_rows=shard_rows, dataset="random",
                     dataset_fingerprint="random", n_images_requested=n_images, images_per_batch=256)
    writer = StoreWriter.open(directory, spec)
    block = torch.randn(256 * TOKENS_PER_IMAGE, D_IN, generator=torch.Generator().manual_seed(0))  # reused: time the writer
    tok = np.arange(TOKENS_PER_IMAGE, dtype=np.int32)
    for start in range(0, n_images, 256):
        idx = np.arange(start, min(start + 256, n_images), dtype=np.int32)
        rows = block[:len(idx) * TOKENS_PER_IMAGE]
        index = np.stack([np.repeat(idx, TOKENS_PER_IMAGE), np.tile(tok, len(idx))], axis=1)
        writer.add(start * TOKENS_PER_IMAGE, rows, index, start, start + len(idx), [])
    writer.finish(n_images, [])


class Clock:
    """Wall time and this process's CPU time (all threads): on a shared machine the CPU figure is the steadier one."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def loader_rates(directory: Path, tokens: str, n_batches: int, segments: int = 5) -> tuple[float, float]:
    """Best (rows per wall second, rows per CPU second) over `segments` runs of `n_batches` batches."""
    stream = open_shuffled(directory, tokens=tokens).batches(BATCH, seed=0)
    next(stream)                                        # first window read + thread start
    best_wall = best_cpu = 0.0
    for _ in range(segments):
        with Clock() as clock:
            for batch in islice(stream, n_batches):
                assert batch.shape == (BATCH, D_IN) and batch.dtype == torch.float32
        best_wall = max(best_wall, n_batches * BATCH / clock.wall)
        best_cpu = max(best_cpu, n_batches * BATCH / clock.cpu)
    stream.close()
    return best_wall, best_cpu


class ReluSAE(torch.nn.Module):
    def __init__(self, d_in: int, d_sae: int):
        super().__init__()
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, d_sae) / d_in**0.5)
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.W_dec = torch.nn.Parameter(self.W_enc.detach().T.clone())
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        return f @ self.W_dec + self.b_dec, f


def train_step_fn():
    sae = ReluSAE(D_IN, D_IN * EXPANSION)
    opt = torch.optim.Adam(sae.parameters(), lr=4e-4)

    def step(x: torch.Tensor) -> None:
        recon, f = sae(x)
        loss = (recon - x).pow(2).sum(-1).mean() + 8e-5 * (f * sae.W_dec.norm(dim=1)).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(step, fixed: torch.Tensor, fed: Iterator[torch.Tensor], n: int) -> dict[str, tuple[float, float]]:
    """Best (wall s, CPU s) per step, fed a fixed in-memory batch vs the loader; interleaved so that a
    shared machine's background load hits both alike."""
    best = {"fixed": (float("inf"), float("inf")), "loader": (float("inf"), float("inf"))}
    for _ in range(n):
        for name, x in (("fixed", fixed), ("loader", None)):
            with Clock() as clock:
                step(next(fed) if x is None else x)
            best[name] = (min(best[name][0], clock.wall), min(best[name][1], clock.cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--shard-rows", type=int, default=65536)
    parser.add_argument("--loader-batches", type=int, default=30)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; store: {args.rows} rows × {D_IN} fp16 "
          f"({args.rows * D_IN * 2 / 2**20:.0f} MiB), shards of {args.shard_rows} rows")

    with tempfile.TemporaryDirectory(prefix="clipsteer-bench-") as tmp:
        directory = Path(tmp) / "store"
        with Clock() as clock:
            write_random_store(directory, args.rows, args.shard_rows)
        print(f"write store: {args.rows / clock.wall:,.0f} rows/s wall, {args.rows / clock.cpu:,.0f} rows/CPU-s "
              f"(StoreWriter from float32 rows, incl. fsync)")

        loader = {tokens: loader_rates(directory, tokens, args.loader_batches) for tokens in ("all", "patches")}
        for tokens, (wall, cpu) in loader.items():
            print(f"loader tokens={tokens:<8}: {wall:>11,.0f} rows/s wall, {cpu:>11,.0f} rows/CPU-s "
                  f"({wall * D_IN * 2 / 2**30:.2f} GiB/s of fp16 rows)")

        step = train_step_fn()
        fixed = torch.randn(BATCH, D_IN)
        step(fixed)                                      # warm-up (allocations, Adam state)
        fed = open_shuffled(directory).batches(BATCH, seed=1)
        best = time_steps(step, fixed, fed, args.steps)
        wall, cpu = best["fixed"]
        trainer = (BATCH / wall, BATCH / cpu)
        print(f"trainer (ReLU SAE {D_IN}→{D_IN * EXPANSION}, batch {BATCH}, fwd+bwd+Adam, CPU): {wall * 1000:,.0f} ms/step "
              f"= {trainer[0]:,.0f} rows/s wall, {trainer[1]:,.0f} rows/CPU-s (best of {args.steps})")
        print(f"same step fed by the loader: {best['loader'][0] * 1000:,.0f} ms "
              f"({(best['loader'][0] / wall - 1) * 100:+.1f}% vs a fixed in-memory batch)")
        for tokens, rates in loader.items():
            print(f"ratio loader/trainer, tokens={tokens:<8}: {rates[0] / trainer[0]:,.1f}× wall, "
                  f"{rates[1] / trainer[1]:,.1f}× CPU  (target ≥ 10×)")

if __name__ == "__main__":
    main()
