"""Where a TopK training step spends its time: clipsteer's `SAEUpdater.step` and sparsify's step, profiled.

Both libraries are built as `benchmarks/peers.py` builds them (same init, same batches) and step alternately;
after `--warmup` untimed rounds, `--steps` rounds run under torch.profiler and the ops are listed by self CPU
time (per step), with each library's share spent in the GEMM (`aten::addmm` / `aten::mm`). With `--device cuda`
the ops are listed by self GPU time instead (kernels included).

    PYTHONPATH=src python benchmarks/topk_step_profile.py --store /work/scratch15/acts768/blocks.2.resid_post \
        --expansion 16 --steps 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from peer_adapters import Setting  # noqa: E402
from peers import build, load_rows, synchronize  # noqa: E402

GEMMS = ("aten::addmm", "aten::mm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--libraries", nargs="+", default=["clipsteer", "sparsify"])
    parser.add_argument("--rows", type=int, default=20, help="ops listed per library")
    parser.add_argument("--shapes", action="store_true", help="also list ops by input shape")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--autocast-bf16", action="store_true", help="clipsteer's matmuls under bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = load_rows(args.store, 1, args.batch * (args.warmup + args.steps + 4))
    train = train.to(args.device)
    d = train.shape[1]
    s = Setting("topk", d, d * args.expansion, args.k, 4e-4, args.batch, 0, device=args.device,
                autocast_bf16=args.autocast_bf16)
    on_gpu = torch.device(args.device).type == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    libraries = [build(name, s, 0.0, train[:16384]) for name in args.libraries]
    batches = list(train.split(args.batch))
    for r in range(args.warmup):
        for library in libraries:
            library.step(batches[r])
    print(f"TopK d={d} width={s.width} batch {s.batch} k {s.k}, threads {args.threads}, {args.steps} profiled steps "
          f"after {args.warmup}; load average {os.getloadavg()[0]:.1f}"
          + ("; clipsteer under bf16 autocast" if args.autocast_bf16 else ""))
    for library in libraries:
        with profile(activities=activities, record_shapes=args.shapes) as prof:
            for r in range(args.steps):
                library.step(batches[args.warmup + r])
            synchronize(args.device)
        events = prof.key_averages()
        # on a GPU an op's row and its kernels' rows both carry the kernels' time: total the kernels only
        total = sum(getattr(e, key) for e in events if not on_gpu or e.device_type == DeviceType.CUDA)
        gemm = sum(getattr(e, key) for e in events if e.key in GEMMS)
        print(f"\n=== {library.name}: {total / args.steps / 1e3:.1f} ms/step ({key}), GEMM ops {100 * gemm / total:.1f} %")
        print(events.table(sort_by=key, row_limit=args.rows, max_name_column_width=50))
        if args.shapes:
            print(prof.key_averages(group_by_input_shape=True).table(
                sort_by=key, row_limit=2 * args.rows, max_name_column_width=30, max_shapes_column_width=70))


if __name__ == "__main__":
    main()
