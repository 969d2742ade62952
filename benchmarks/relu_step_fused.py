"""ReLU training step: the fused node (`clipsteer.sae.fused_relu`) against the generic ops, side by side.

Two identical SAEs (same seed, same init, same batches) take turns step by step, the first mover
alternating; the generic one runs with `model.fused_relu_applies` patched to False, which is exactly the
code path before the fused node. Each step is timed alone; the ratio generic/fused is taken per round and
reported as median (IQR), with the load average. The final weights of the two are compared as a check.

    PYTHONPATH=src python benchmarks/relu_step_fused.py --store /work/artifacts/acts/blocks.2.resid_post \
        --expansions 16 64 --rounds 12 --threads 1
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from clipsteer.activations.store import ActivationStore
from clipsteer.sae import ObjectiveConfig, SAEConfig, SAERecipe, TensorSource, Trainer, TrainerConfig
from clipsteer.sae import model as model_module

FUSED = model_module.fused_relu_applies


def updater(rows: torch.Tensor, d_sae: int, batch: int):  # type: ignore[no-untyped-def]
    config = TrainerConfig(tokens_per_batch=batch, lr=4e-4, lr_warmup_steps=0, progress=False)
    trainer = Trainer([SAERecipe("b", SAEConfig(d_in=rows.shape[1], d_sae=d_sae), ObjectiveConfig())],
                      TensorSource(rows), config)
    (u,) = trainer._build_updaters()
    trainer._initialise([u])
    return u


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--expansions", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--skip", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = ActivationStore.open(args.store)
    rows = store.read(0, min(store.n_rows, args.batch * (args.rounds + 4))).float()
    d = rows.shape[1]
    print(f"d={d}, batch {args.batch}, threads {args.threads}, {args.rounds} rounds ({args.skip} untimed)")
    for expansion in args.expansions:
        load0 = os.getloadavg()[0]
        fused, generic = updater(rows, d * expansion, args.batch), updater(rows, d * expansion, args.batch)
        times: dict[str, list[float]] = {"fused": [], "generic": []}
        batches = list(rows.split(args.batch))
        for r in range(args.rounds):
            x = batches[r % len(batches)]
            order = [("fused", fused), ("generic", generic)]
            for name, u in order if r % 2 == 0 else order[::-1]:
                model_module.fused_relu_applies = FUSED if name == "fused" else (lambda x, w: False)
                start = time.perf_counter()
                u.step(x, r, 4e-4)
                times[name].append(time.perf_counter() - start)
        model_module.fused_relu_applies = FUSED
        f, g = np.array(times["fused"][args.skip:]), np.array(times["generic"][args.skip:])
        q1, med, q3 = np.percentile(g / f, [25, 50, 75])
        diff = max(float((a - b).detach().abs().max()) for a, b in zip(fused.sae.parameters(), generic.sae.parameters(),
                                                               strict=True))
        print(f"x{expansion} (d_sae {d * expansion}): fused {np.median(f) * 1e3:.0f} ms/step, generic "
              f"{np.median(g) * 1e3:.0f} ms/step, ratio generic/fused {med:.2f} (IQR {q1:.2f}-{q3:.2f}), "
              f"{len(f)} timed rounds; max |Δ weight| after {args.rounds} steps {diff:.1e}; load average "
              f"{load0:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
