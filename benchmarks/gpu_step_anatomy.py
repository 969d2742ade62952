"""Where a training step's wall time goes on a GPU: kernel time against host overhead, per library.

For each cell (TopK d=768 ×64 k 32; ReLU d=768 ×16) and each library (clipsteer in fp32, clipsteer under bf16
autocast, and the fastest peer of peers.md §15 if it imports: sparsify for TopK, dictionary_learning for ReLU):
- wall: median time of one step, synchronised before and after (as `peers.py` times steps);
- kernels: GPU kernel time per step, summed from torch.profiler over `--profiled` steps;
- host: median wall time of one step of the same library at a tiny size (d=32, ×8, batch 64), where kernels
  take microseconds: what the step costs the host (Python, dispatch, launches, synchronisations).
wall − kernels is the time the GPU sits idle inside a step. Data: Gaussian rows with a fixed random covariance
(timing only; quality is `peers.py`'s job). A second table times `torch.topk` on the TopK cell's
pre-activations against a two-stage top-k over row chunks (exact: every row's top k lie among its chunks' top k).

    python benchmarks/gpu_step_anatomy.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from peer_adapters import Setting  # noqa: E402
from peers import available, build, synchronize, timed_step  # noqa: E402

CELLS = {"topk": ("sparsify", 64, 32), "relu": ("dictionary_learning", 16, 0)}


def rows(n: int, d: int, device: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g) / d**0.5
    return (torch.randn(n, d, generator=g) @ mixing + torch.randn(d, generator=g)).to(device)


def step_times(library, batches: list[torch.Tensor], device: str) -> list[float]:
    return [timed_step(library, x, device) for x in batches]


def kernel_ms(library, batches: list[torch.Tensor], device: str) -> float:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for x in batches:
            library.step(x)
        synchronize(device)
    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    return sum(e.self_device_time_total for e in kernels) / len(batches) / 1e3


def measure(name: str, s: Setting, data: torch.Tensor, steps: int, profiled: int) -> tuple[float, float]:
    library = build(name, s, 1e-4 if name.startswith("clipsteer") else 0.1, data[:16384])
    batches = list(data.split(s.batch))
    step_times(library, batches[:5], s.device)  # warm-up (allocator, autotuning)
    walls = step_times(library, [batches[i % len(batches)] for i in range(steps)], s.device)
    return statistics.median(walls) * 1e3, kernel_ms(library, batches[:profiled], s.device)


def topk_table(device: str, d_sae: int, k: int, k_aux: int) -> None:
    print(f"\ntop-k of [4096, {d_sae}] pre-activations (ms, median of 20 after 3; CUDA events)")
    x = rows(4096, 768, device)
    w = torch.randn(768, d_sae, device=device) / 768**0.5
    for dtype in (torch.float32, torch.bfloat16):
        pre = (x.to(dtype) @ w.to(dtype)).contiguous()
        for kk in (k, k_aux):
            reference = pre.topk(kk, dim=-1, sorted=True).values
            variants = {"torch.topk": lambda p, kk=kk: p.topk(kk, dim=-1, sorted=False)}
            for chunk in (512, 1024, 2048, 4096, 8192):
                if d_sae % chunk == 0 and chunk > kk:
                    variants[f"chunks of {chunk}"] = lambda p, c=chunk, kk=kk: chunked_topk(p, kk, c)
            cells = []
            for label, fn in variants.items():
                values = fn(pre)[0].sort(dim=-1, descending=True).values
                exact = torch.equal(values, reference)
                cells.append(f"{label} {cuda_ms(lambda fn=fn, pre=pre: fn(pre)):.3f}{'' if exact else ' (NOT EXACT)'}")
            print(f"  {str(dtype)[6:]:>8} k={kk:<4} " + " | ".join(cells))


def chunked_topk(pre: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, width = pre.shape
    local = pre.view(n, width // chunk, chunk).topk(k, dim=-1, sorted=False)
    offsets = torch.arange(0, width, chunk, device=pre.device).view(1, -1, 1)
    candidates = (local.indices + offsets).view(n, -1)
    top = local.values.view(n, -1).topk(k, dim=-1, sorted=False)
    return top.values, candidates.gather(1, top.indices)


def cuda_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--profiled", type=int, default=5)
    parser.add_argument("--cells", nargs="+", default=list(CELLS))
    parser.add_argument("--d", type=int, default=768, help="input width (smaller for a smoke test)")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}; torch {torch.__version__}")
    for arch in args.cells:
        peer, expansion, k = CELLS[arch]
        libraries = [("clipsteer", False), ("clipsteer", True)]
        reason = available(peer, arch)
        libraries += [(peer, False)] if reason is None else []
        print(f"\n{arch} d={args.d} ×{expansion}{f' k {k}' if k else ''}, batch 4096" + (f" ({reason})" if reason else ""))
        print(f"  {'library':<24} {'wall ms':>8} {'kernels ms':>11} {'idle ms':>8} {'host ms (tiny)':>15}")
        data = rows(4096 * 8, args.d, args.device)
        tiny_data = rows(64 * 8, 32, args.device, seed=1)
        for name, bf16 in libraries:
            s = Setting(arch, args.d, args.d * expansion, k, 4e-4, 4096, 0, device=args.device, autocast_bf16=bf16)
            tiny = Setting(arch, 32, 256, min(k, 8), 4e-4, 64, 0, device=args.device, autocast_bf16=bf16)
            label = name + (" bf16 autocast" if bf16 else "")
            try:
                wall, kernels = measure(name, s, data, args.steps, args.profiled)
                host, _ = measure(name, tiny, tiny_data, args.steps, 1)
            except Exception as error:  # a peer that installs but does not build here: say why, go on
                print(f"  {label:<24} failed: {type(error).__name__}: {error}")
                continue
            print(f"  {label:<24} {wall:8.2f} {kernels:11.2f} {wall - kernels:8.2f} {host:15.2f}", flush=True)
    if "topk" in args.cells and args.device == "cuda":
        topk_table(args.device, 768 * 64, 32, 384)


if __name__ == "__main__":
    main()
