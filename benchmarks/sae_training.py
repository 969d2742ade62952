"""SAE training throughput on this machine, against its own measured dense-matmul speed.

For d_in 768, batch 4096, expansion 16 and 64: full training steps (forward, loss, backward, decoder-norm
handling, clipping, Adam) of ReLU and TopK (k = 32, 64) SAEs, in fp32 and under bf16 autocast.
Printed per configuration (best of the timed rounds; rounds interleave all configurations of a group so
that load from other processes on a shared machine hits them alike):
- step time and tokens/s (wall clock), and the process CPU time per step;
- matmul fraction = (time of the plain dense matmuls the step needs, measured in the same rounds) /
  (step time), on wall and on CPU time. ReLU and the dense-decode TopK reference need five
  [4096×768]·[768×d_sae]-sized matmuls (encoder forward, decoder forward, decoder input- and weight-
  gradient, encoder weight-gradient — the b_dec gradient is folded into a vector product); the sparse
  TopK path needs only the encoder forward;
- for TopK, the speed-up of the sparse path over the dense-decode reference (same SAE, same step).
Targets: ReLU matmul fraction ≥ 0.70; TopK sparse ≥ 1.7× dense. Ratios are printed, not asserted.

    python benchmarks/sae_training.py --quick        # 1 warm-up + 2 timed rounds
    python benchmarks/sae_training.py --expansions 16 --rounds 5
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable

import torch

from clipsteer.sae import ObjectiveConfig, SAEConfig, SAERecipe, SparseAutoencoder, TrainerConfig
from clipsteer.sae.updater import SAEUpdater

D_IN, BATCH = 768, 4096


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def clock(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def matmul_calls(d_sae: int, dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    """Plain matmuls with the shapes of one SAE step."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, D_IN, generator=g).to(dtype)
    w_enc = torch.randn(D_IN, d_sae, generator=g).to(dtype)
    w_dec = torch.randn(d_sae, D_IN, generator=g).to(dtype)
    f = torch.randn(BATCH, d_sae, generator=g).to(dtype)
    grad_out = torch.randn(BATCH, D_IN, generator=g).to(dtype)
    return {
        "encoder_forward": lambda: x @ w_enc,
        "decoder_forward": lambda: f @ w_dec,
        "decoder_grad_input": lambda: grad_out @ w_dec.T,
        "decoder_grad_weight": lambda: f.T @ grad_out,
        "encoder_grad_weight": lambda: x.T @ f,
    }


def make_step(architecture: str, d_sae: int, k: int | None, bf16: bool, topk_impl: str) -> Callable[[], object]:
    config = SAEConfig(d_in=D_IN, d_sae=d_sae, architecture=architecture, k=k, normalization="layer_norm")  # type: ignore[arg-type]
    sae = SparseAutoencoder(config, generator=torch.Generator().manual_seed(0), topk_impl=topk_impl)  # type: ignore[arg-type]
    updater = SAEUpdater(SAERecipe("bench", config, ObjectiveConfig()), sae,
                         TrainerConfig(tokens_per_batch=BATCH, autocast_bf16=bf16, progress=False))
    g = torch.Generator().manual_seed(1)
    batch = torch.randn(BATCH, D_IN, generator=g) * 2 + 0.3
    counter = iter(range(10**9))
    return lambda: updater.step(batch, next(counter), lr=4e-4)


def run_group(expansion: int, bf16: bool, ks: list[int], rounds: int) -> None:
    d_sae = D_IN * expansion
    dtype_name = "bf16" if bf16 else "fp32"
    matmuls = matmul_calls(d_sae, torch.bfloat16 if bf16 else torch.float32)
    steps: dict[str, Callable[[], object]] = {"relu": make_step("relu", d_sae, None, bf16, "sparse")}
    for k in ks:
        steps[f"topk{k} dense"] = make_step("topk", d_sae, k, bf16, "dense")
        steps[f"topk{k} sparse"] = make_step("topk", d_sae, k, bf16, "sparse")
    for fn in [*matmuls.values(), *steps.values()]:  # warm-up
        fn()
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, fn in [*matmuls.items(), *steps.items()]:
            wall, cpu = clock(fn)
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], wall), min(old[1], cpu))
    enc = best["encoder_forward"]
    five = (sum(best[n][0] for n in matmuls), sum(best[n][1] for n in matmuls))
    flops = 2 * BATCH * D_IN * d_sae
    print(f"{expansion:>4} {dtype_name:>5} {'matmul (enc fwd)':>16} {enc[0]:>7.3f} {enc[1]:>7.3f} {'':>8} "
          f"{'':>12} {'':>12}  {flops / enc[0] / 1e9:.0f} GFLOP/s")
    for name in steps:
        wall, cpu = best[name]
        need = enc if name.endswith("sparse") else five
        note = ""
        if name.endswith("sparse"):
            dense = best[name.replace("sparse", "dense")]
            note = f"{dense[0] / wall:.2f}x dense (cpu {dense[1] / cpu:.2f}x)"
        elif name == "relu":
            note = f"{5 * flops / wall / 1e9:.0f} GFLOP/s"
        print(f"{expansion:>4} {dtype_name:>5} {name:>16} {wall:>7.3f} {cpu:>7.3f} {BATCH / wall:>8.0f} "
              f"{need[0] / wall:>12.2f} {need[1] / cpu:>12.2f}  {note}")
    del steps, matmuls
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 2 timed rounds")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (ignored with --quick)")
    parser.add_argument("--expansions", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--ks", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; d_in={D_IN}, batch={BATCH}; "
          f"1 warm-up + best of {rounds} interleaved rounds; {load()}")
    header = (f"{'exp':>4} {'dtype':>5} {'config':>16} {'wall s':>7} {'cpu s':>7} {'tok/s':>8} "
              f"{'mm frac wall':>12} {'mm frac cpu':>12}  note")
    print(header)
    print("-" * (len(header) + 24))
    for expansion in args.expansions:
        for dtype in args.dtypes:
            run_group(expansion, dtype == "bf16", args.ks, rounds)
    print(f"done; {load()}")


if __name__ == "__main__":
    main()
