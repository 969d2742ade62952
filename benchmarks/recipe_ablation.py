"""Why early training is sample-inefficient: held-out EV over the first steps, one factor changed at a time.

Variants of clipsteer's recipe, each trained from the same seed on the same batches (one seeded
permutation of a store's rows; the last `--held-out` rows held out), Adam at one constant lr:
- normalisation `layer_norm` (the paper's) or `none`;
- reconstruction loss `paper` (MSE over a per-token norm) or `mse`;
- encoder init `decoder_transpose` (the paper's W_enc = W_decᵀ) or `fitted_scale` (then scaled by the
  least-squares factor, `clipsteer.sae.trainer.fit_encoder_scale_`; the factor is printed).
Printed per variant: step:EV/L0/dead on the held-out rows, at step 0 (after initialisation) and after
the listed steps. Quality only: nothing here depends on machine load.

    python benchmarks/recipe_ablation.py --store /work/artifacts/acts/blocks.2.resid_post --steps 30
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from clipsteer.activations.store import ActivationStore
from clipsteer.sae import ObjectiveConfig, SAEConfig, SAERecipe, TensorSource, Trainer, TrainerConfig

VARIANTS = {  # name: (normalization, reconstruction, encoder_init)
    "paper": ("layer_norm", "paper", "decoder_transpose"),
    "paper+fitted": ("layer_norm", "paper", "fitted_scale"),
    "none+mse": ("none", "mse", "decoder_transpose"),
    "none+mse+fitted": ("none", "mse", "fitted_scale"),
    "layer_norm+mse+fitted": ("layer_norm", "mse", "fitted_scale"),
}


@torch.no_grad()
def held_out(sae, v: Tensor) -> tuple[float, float, float]:
    sae.eval()
    codes = sae.encode(v)
    recon = sae.decode(codes, x=v)
    sae.train()
    ev = 1 - float((recon - v).pow(2).sum() / (v - v.mean(0)).pow(2).sum())
    return ev, float((codes > 0).sum(-1).float().mean()), float((~(codes > 0).any(0)).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--arch", nargs="+", default=["relu", "topk"])
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--held-out", type=int, default=20000)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = ActivationStore.open(args.store)
    rows = store.read(0, store.n_rows)
    train, v = rows[:-args.held_out], rows[-args.held_out:]
    d = rows.shape[1]
    report_at = {s for s in (1, 3, 10, 30, 100, 300, 1000) if s <= args.steps} | {args.steps}
    for arch in args.arch:
        for name in args.variants:
            normalization, reconstruction, encoder_init = VARIANTS[name]
            config = SAEConfig(d_in=d, d_sae=d * args.expansion, architecture=arch, k=32 if arch == "topk" else None,
                               normalization=normalization)
            trainer = Trainer([SAERecipe("a", config, ObjectiveConfig(reconstruction=reconstruction))],
                              TensorSource(train), TrainerConfig(lr_warmup_steps=0, encoder_init=encoder_init,
                                                                 progress=False))
            (updater,) = trainer._build_updaters()
            trainer._initialise([updater])
            sae = updater.sae
            scale = float(sae.W_enc.detach().norm() / sae.W_dec.detach().norm())
            points = {0: held_out(sae, v)}
            stream = TensorSource(train).batches(4096, 0)
            for step in range(args.steps):
                updater.step(next(stream), step, 4e-4)
                if step + 1 in report_at:
                    points[step + 1] = held_out(sae, v)
            print(f"{arch} {name} (encoder scale {scale:.3f}): " + " ".join(
                f"{t}:{e:.3f}/{l0:.0f}/{dead:.2f}" for t, (e, l0, dead) in points.items()), flush=True)


if __name__ == "__main__":
    main()
