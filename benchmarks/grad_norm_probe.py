"""How large each reconstruction loss makes a ReLU SAE's gradient, against the trainer's clip (`max_grad_norm`).

The paper loss divides the squared error by each token's centred norm; plain MSE does not, so its loss and gradient
are larger by about that norm, and with the default clip of 1.0 that decides whether the clip binds. Prints, per
loss, the pre-clip gradient norm, the reconstruction term and λ·L1 over the first steps (same init, same batches),
and the store's mean centred token norm with its coefficient of variation (how unequal the paper loss's per-token
weights are). λ for `mse` is the paper λ times the mean norm, so both weigh sparsity alike.

    PYTHONPATH=src python benchmarks/grad_norm_probe.py --store /work/scratch15/acts768/blocks.2.resid_post
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from clipsteer.sae import TensorSource

sys.path.insert(0, str(Path(__file__).parent))
from peer_adapters import Setting  # noqa: E402
from peers import build, load_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--lam", type=float, default=1e-4, help="λ in the paper loss's units")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, _ = load_rows(args.store, 100, args.batch * (args.steps + 4))
    norms = (train[: args.batch] - train[: args.batch].mean(0)).norm(dim=-1)
    mean_norm = float(norms.mean())
    print(f"d={train.shape[1]}: mean centred token norm {mean_norm:.2f}, coefficient of variation "
          f"{float(norms.std() / norms.mean()):.3f}")
    d = train.shape[1]
    s = Setting("relu", d, d * args.expansion, 32, 4e-4, args.batch, 0, max_grad_norm=1.0)   # the paper's clip, as measured
    # built as peers.py builds them: the default recipe (paper loss) and its ln_mse ablation (plain MSE)
    for loss, name, lam in [("paper", "clipsteer", args.lam), ("mse", "clipsteer-ln_mse", args.lam * mean_norm)]:
        updater = build(name, s, lam, train[:16384]).updater
        stream = TensorSource(train).batches(args.batch, s.seed)
        rows = []
        for step in range(args.steps):
            m = updater.step(next(stream), step, s.lr, want_metrics=True)
            assert m is not None
            rows.append(f"{m['grad_norm']:.3f}/{m['reconstruction']:.4f}/{lam * m['l1']:.4f}")
        print(f"{loss:5s} λ={lam:.3g}  grad norm/reconstruction/λ·L1 per step: " + "  ".join(rows), flush=True)


if __name__ == "__main__":
    main()
