"""AuxK's selection in the TopK encoder: the k_aux largest pre-activations among dead features, from a masked copy
of the [N, d_sae] pre-activations (before) against masking the encoder's own buffer in place (now).

The two variants alternate, each on a freshly computed `pre` in a reused buffer (as the encoder's workspace
holds it), and the ratio is taken per round; the main top-k (k = 32) on the same matrix is timed for scale.

    PYTHONPATH=src python benchmarks/auxk_select.py --d-in 768 --expansion 64 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--expansion", type=int, default=64)
    parser.add_argument("--k-aux", type=int, default=None, help="default: d_in // 2 (Gao et al.)")
    parser.add_argument("--dead-fraction", type=float, default=0.7)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width = args.d_in * args.expansion
    k_aux = args.k_aux or args.d_in // 2
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(args.rows, width, generator=generator)
    dead = torch.rand(width, generator=generator) < args.dead_fraction
    buffer = torch.empty_like(source)

    def fresh_pre() -> torch.Tensor:
        return buffer.copy_(source)  # what the encoder's addmm leaves in its workspace buffer

    def copy_then_select() -> torch.Tensor:
        return fresh_pre().masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1, sorted=False).indices

    def select_in_place() -> torch.Tensor:
        return fresh_pre().masked_fill_(~dead, float("-inf")).topk(k_aux, dim=-1, sorted=False).indices

    def main_topk() -> torch.Tensor:
        return fresh_pre().topk(32, dim=-1, sorted=False).indices

    def timed(f: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        out = f()
        return time.perf_counter() - start, out

    for warm_up in (copy_then_select, select_in_place):
        timed(warm_up)
    times: dict[str, list[float]] = {"copy": [], "in_place": [], "topk32": []}
    for r in range(args.rounds):
        order = [("copy", copy_then_select), ("in_place", select_in_place)]
        for name, f in order if r % 2 == 0 else order[::-1]:
            seconds, indices = timed(f)
            times[name].append(seconds)
            if name == "copy":
                reference = indices.sort(dim=-1).values
            else:
                assert torch.equal(indices.sort(dim=-1).values, reference), "the two selections differ"
        times["topk32"].append(timed(main_topk)[0])
    ratios = [c / i for c, i in zip(times["copy"], times["in_place"], strict=True)]
    print(f"pre [{args.rows}, {width}] (d_in {args.d_in} ×{args.expansion}), k_aux {k_aux}, "
          f"{args.dead_fraction:.0%} dead, {args.threads} thread(s), {args.rounds} rounds; median ms:")
    for name, values in times.items():
        print(f"  {name:9s} {1000 * statistics.median(values):9.1f}")
    print(f"copy / in place: {statistics.median(ratios):.2f}× (per-round {min(ratios):.2f}–{max(ratios):.2f}); "
          "identical selections in every round")


if __name__ == "__main__":
    main()
