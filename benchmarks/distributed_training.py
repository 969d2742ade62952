"""Data-parallel SAE training throughput: N gloo ranks on this machine's CPUs against one process.

Trains the same ReLU SAE (d_in, expansion, global batch as given) on an in-memory stream, in rounds that
interleave the configurations so load from other processes hits them alike, and prints tokens/s (best
round) for
- 1 process, 1 thread;  1 process, N threads (what a plain single-process run would use);
- N ranks (spawned like torchrun would, gloo), 1 thread each, global batch split N ways.
The loop is timed inside each process (start-up and process spawning are not counted). Printed, not
asserted. A GPU figure needs a machine with N GPUs: run the same training under
`torchrun --nproc-per-node N -m clipsteer train ... --trainer.device cuda --dist.mode data` and read
`tokens_per_s` in metrics.jsonl.

    python benchmarks/distributed_training.py --quick
    python benchmarks/distributed_training.py --d-in 768 --expansion 16 --batch 4096 --steps 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from clipsteer.sae import SAEConfig, SAERecipe, TensorSource, Trainer, TrainerConfig
from clipsteer.sae.distributed import LOCAL, RankSlice, Sync, process_group, run_local


def trainer_config(batch: int, steps: int) -> TrainerConfig:
    return TrainerConfig(tokens_per_batch=batch, total_tokens=batch * steps, init_samples=batch, b_dec_init="mean",
                         log_every=10**6, progress=False)


def train_once(d_in: int, expansion: int, batch: int, steps: int, threads: int, report: Path | None) -> float:
    """Train in this process (joining a process group when launched as a rank); returns tokens/s."""
    torch.set_num_threads(threads)
    data = torch.randn(batch * 4, d_in, generator=torch.Generator().manual_seed(0))
    recipe = SAERecipe("relu", SAEConfig(d_in=d_in, d_sae=d_in * expansion, architecture="relu"))
    with process_group() as rank:
        source, sync = (RankSlice(TensorSource(data), rank), Sync(rank)) if rank.world > 1 else (TensorSource(data),
                                                                                               LOCAL)
        sync.barrier()
        start = time.perf_counter()
        Trainer([recipe], source, trainer_config(batch, steps), sync=sync).run()
        seconds = time.perf_counter() - start
    speed = batch * steps / seconds
    if report is not None and rank.is_main:
        report.write_text(json.dumps({"tokens_per_s": speed}))
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="d_in 128, batch 1024, 10 steps, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.d_in, args.batch, args.steps, args.rounds = 128, 1024, 10, 2
    shape = (args.d_in, args.expansion, args.batch, args.steps)
    load_before = os.getloadavg()
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rank0.json"
        for _ in range(args.rounds):
            speeds = {"1 process, 1 thread": train_once(*shape, 1, None),
                      f"1 process, {args.ranks} threads": train_once(*shape, args.ranks, None)}
            run_local(train_once, args.ranks, *shape, 1, report)
            speeds[f"{args.ranks} ranks (gloo), 1 thread each"] = json.loads(report.read_text())["tokens_per_s"]
            for name, speed in speeds.items():
                best[name] = max(best.get(name, 0.0), speed)
    load_after = os.getloadavg()
    print(f"ReLU SAE d_in {args.d_in} × {args.expansion}, global batch {args.batch}, {args.steps} steps, best of "
          f"{args.rounds} rounds; load average (1, 5, 15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}, on {os.cpu_count()} CPUs")
    base = best["1 process, 1 thread"]
    for name, speed in best.items():
        print(f"  {name:<32} {speed:>10.0f} tokens/s   {speed / base:.2f}× 1 process, 1 thread")


if __name__ == "__main__":
    main()
