"""Training step before/after buffer reuse, side by side: ReLU's fused node (`clipsteer.sae.fused_relu`) against
the generic ops, and TopK's sparse encoder with its [N, d_sae] buffer reused (`clipsteer.sae.workspace`) or not.

Two identical SAEs (same seed, same init, same batches) take turns step by step, the first mover
alternating. The "generic" ReLU one runs with `model.plain_fp32` patched to False, exactly the code path
before the fused node; the "generic" TopK one has no workspace (a fresh pre-activation tensor per step). Each step is timed alone; the ratio generic/fused is taken per round and
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

FUSED = model_module.plain_fp32


def updater(rows: torch.Tensor, d_sae: int, batch: int, arch: str):  # type: ignore[no-untyped-def]
    config = TrainerConfig(tokens_per_batch=batch, lr=4e-4, lr_warmup_steps=0, progress=False)
    sae = SAEConfig(d_in=rows.shape[1], d_sae=d_sae, architecture=arch, k=32 if arch == "topk" else None)  # type: ignore[arg-type]
    trainer = Trainer([SAERecipe("b", sae, ObjectiveConfig())],
                      TensorSource(rows), config)
    (u,) = trainer._build_updaters()
    trainer._initialise([u])
    return u


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--arch", choices=["relu", "topk"], default="relu")
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
    print(f"{args.arch} d={d}, batch {args.batch}, threads {args.threads}, {args.rounds} rounds ({args.skip} untimed)")
    for expansion in args.expansions:
        load0 = os.getloadavg()[0]
        fused, generic = (updater(rows, d * expansion, args.batch, args.arch) for _ in range(2))
        if args.arch == "topk":
            generic.workspace = None
        times: dict[str, list[float]] = {"fused": [], "generic": []}
        batches = list(rows.split(args.batch))
        for r in range(args.rounds):
            x = batches[r % len(batches)]
            order = [("fused", fused), ("generic", generic)]
            for name, u in order if r % 2 == 0 else order[::-1]:
                if args.arch == "relu":
                    model_module.plain_fp32 = FUSED if name == "fused" else (lambda x, w: False)
                start = time.perf_counter()
                u.step(x, r, 4e-4)
                times[name].append(time.perf_counter() - start)
        model_module.plain_fp32 = FUSED
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
