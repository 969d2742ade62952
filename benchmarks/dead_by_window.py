"""How many of a TopK SAE's features are dead by the trainer's count (idle for more than the dead-feature window,
so that AuxK acts on them) as training goes, built as `benchmarks/peers.py` builds clipsteer.

    PYTHONPATH=src python benchmarks/dead_by_window.py --store <d=128 store> --expansion 64 --steps 977 \
        --window 100 --gradient-rescale 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from peer_adapters import Setting  # noqa: E402
from peers import build, load_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--expansion", type=int, default=64)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=977)
    parser.add_argument("--window", type=int, default=100, help="the dead-feature window counted against")
    parser.add_argument("--gradient-rescale", type=float, default=0.0, help="p (TrainerConfig.gradient_rescale)")
    parser.add_argument("--every", type=int, default=50, help="print every this many steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = load_rows(args.store, 100, None)  # the last 100 images held out, as peers.py does
    d = train.shape[1]
    setting = Setting("topk", d, d * args.expansion, args.k, 4e-4, args.batch, 0, dead_feature_window=args.window,
                      gradient_rescale=args.gradient_rescale)
    library = build("clipsteer", setting, 0.0, train[:16384])
    stats = library.updater.stats
    generator = torch.Generator().manual_seed(0)
    print(f"d={d} ×{args.expansion}, k {args.k}, window {args.window} steps, gradient rescale "
          f"p = {args.gradient_rescale}; features idle for more than the window, by step:")
    for step in range(args.steps):
        library.step(train[torch.randint(0, train.shape[0], (args.batch,), generator=generator)])
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            dead = int(stats.dead_mask(args.window).sum())
            print(f"  step {step + 1:5d}: {dead} of {setting.width}", flush=True)


if __name__ == "__main__":
    main()
