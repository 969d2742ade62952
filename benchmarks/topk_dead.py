"""Why the fitted-scale TopK default left more features dead than sparsify, measured (issue 15).

Variants of clipsteer's TopK SAE (d=128 toy store, ×16, k 32, batch 4096, Adam 4e-4 constant, one thread)
and sparsify, trained on the same batches; held-out EV, L0 and dead fraction (never fires on the store's
last 100 images, the peers.py formula) at chosen steps. Variants:
  default      the current default recipe (TopK: norm-matched encoder scale, at most 1; `EncoderScale`)
  ls           the previous default (least-squares scale for TopK too)
  paper        `--recipe paper` (W_enc = W_decᵀ)
  scale=C      default, then W_enc rescaled so that its scale relative to W_decᵀ is C
  enc_lr_c     default, with the encoder's Adam lr multiplied by its scale c (= training W_enc/c at paper scale)
  window=W     default with AuxK's dead-feature window W steps instead of 5000
  sparsify     eai-sparsify's step (as in peers.py)

    PYTHONPATH=src python benchmarks/topk_dead.py 100 1,16,50,100 default,ls,paper,sparsify
    STORE=/tmp/i15b/d768/acts/blocks.2.resid_post PYTHONPATH=src python benchmarks/topk_dead.py 10 1,4,10 default,ls
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from peer_adapters import Setting, Sparsify  # noqa: E402
from peers import Clipsteer, evaluate, load_rows  # noqa: E402

from clipsteer.sae import TensorSource, architectures  # noqa: E402

STORE = os.environ.get("STORE", "/work/artifacts/acts/blocks.2.resid_post")  # e.g. the d=768 store


class ScaledAdam(torch.optim.Adam):
    """Adam whose param groups may carry an `lr_scale` factor."""

    def step(self, closure: Any = None) -> Any:
        saved = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] = g["lr"] * g.get("lr_scale", 1.0)
        out = super().step(closure)
        for g, lr in zip(self.param_groups, saved, strict=True):
            g["lr"] = lr
        return out


def make(variant: str, s: Setting, sample: torch.Tensor) -> Any:
    if variant == "sparsify":
        return Sparsify(s, 0.0, sample)
    saved = architectures.ARCH_SPECS["topk"]
    if variant == "ls":
        architectures.ARCH_SPECS["topk"] = dataclasses.replace(saved, encoder_scale=architectures.EncoderScale())
    try:
        forced = float(variant.split("=")[1]) if variant.startswith("scale=") else None  # peers.py --encoder-scale
        lib = Clipsteer(dataclasses.replace(s, encoder_scale=forced), 0.0, sample,
                        recipe="paper" if variant == "paper" else "default")
    finally:
        architectures.ARCH_SPECS["topk"] = saved
    sae = lib.sae
    c = float(sae.W_enc.detach().norm() / sae.W_dec.detach().norm())
    if variant == "enc_lr_c":
        encoder = [sae.W_enc, sae.b_enc]
        rest = [p for p in sae.parameters() if all(p is not q for q in encoder)]
        lib.updater.optimizer = ScaledAdam([{"params": encoder, "lr_scale": c}, {"params": rest}], lr=s.lr)
    if variant.startswith("window="):
        lib.updater.config = dataclasses.replace(lib.updater.config, dead_feature_window=int(variant.split("=")[1]))
    lib.name = f"{variant} (c={float(sae.W_enc.detach().norm() / sae.W_dec.detach().norm()):.3f})"
    return lib


def main() -> None:
    torch.set_num_threads(1)
    steps, evals, variants = int(sys.argv[1]), {int(v) for v in sys.argv[2].split(",")}, sys.argv[3].split(",")
    train, held = load_rows(STORE, 100, 4096 * (steps + 8))
    s = Setting("topk", train.shape[1], 16 * train.shape[1], 32, 4e-4, 4096, 0, max_grad_norm=1.0)  # as topk_dead.txt ran
    libs = [make(v, s, train[:16384]) for v in variants]
    stream = TensorSource(train).batches(s.batch, s.seed)
    print("load", os.getloadavg(), flush=True)
    for r in range(1, steps + 1):
        x = next(stream)
        for lib in libs:
            lib.step(x)
        if r in evals:
            for lib in libs:
                e = evaluate(lib, held, s.width)
                print(f"step {r:4d} tokens {r * s.batch:8d} {lib.name:28s} EV {e['ev']:.4f} L0 {e['l0']:.1f} "
                      f"dead {e['dead']:.3f}", flush=True)
    print("load", os.getloadavg(), flush=True)


if __name__ == "__main__":
    main()
