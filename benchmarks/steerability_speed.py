"""Steerability engines side by side on ViT-B/32 (random weights) with a random ×64 SAE.

1. Last block (blocks.11.resid_post): every one of the SAE's features with the exact closed form, vs
   the plain per-feature forward (timed on a sample, extrapolated). Target ≥ 50× and all features ≤ 15 min.
2. Middle block (blocks.6.resid_post): (feature, image) pairs per second of the batched suffix engine
   vs the plain engine. Target ≥ 3×.
The vocabulary embeddings are random unit vectors (the random model has no tokenizer); the readout
arithmetic is the same as with real words. Closed-form and suffix results are checked against the
plain engine on the sampled features.

    python benchmarks/steerability_speed.py [--features 49152] [--images 192] [--vocab 5000] [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from clipsteer.models.testing import random_vit_b32
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.steer.sae_adapter import SAEDictionary
from clipsteer.steer.steerability import SteeringRun, SteeringSpec


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=49152, help="SAE width (×64 of 768 by default)")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--plain-sample", type=int, default=2, help="features timed with the plain engine")
    parser.add_argument("--suffix-sample", type=int, default=4, help="features timed with the suffix engine")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.features, args.images, args.vocab = 4096, 32, 1000

    backbone = random_vit_b32(seed=0)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.images, 3, 224, 224, generator=g)
    text = torch.nn.functional.normalize(torch.randn(args.vocab, backbone.embed_dim, generator=g), dim=-1)
    sae = SparseAutoencoder(SAEConfig(d_in=768, d_sae=args.features, normalization="layer_norm"), generator=g)
    dictionary = SAEDictionary(sae)
    spec = SteeringSpec()  # α = 150, all tokens, τ = 100
    print(f"ViT-B/32 random weights, SAE {args.features} features, {args.images} images, |V| = {args.vocab}, "
          f"{torch.get_num_threads()} threads")

    # 1. Last block: closed form over every feature vs plain per-feature forwards.
    run, t_setup = timed(lambda: SteeringRun(backbone, "blocks.11.resid_post", dictionary, pixels, text, spec))
    sample = torch.arange(args.plain_sample) * (args.features // max(1, args.plain_sample))
    plain, t_plain = timed(lambda: run.scores(sample, engine="plain", progress=False))
    closed_all, t_closed = timed(lambda: run.scores(torch.arange(args.features), engine="closed_form"))
    err = (closed_all.steerability[sample] - plain.steerability).abs().max()
    per_feature_plain = t_plain / len(sample)
    print(f"[last block] setup (clean prefix + readout) {t_setup:.1f} s")
    print(f"[last block] plain: {per_feature_plain:.2f} s/feature → all {args.features} features ≈ "
          f"{per_feature_plain * args.features / 3600:.1f} h (extrapolated from {len(sample)})")
    print(f"[last block] closed form: all {args.features} features in {t_closed:.1f} s "
          f"({t_closed / 60:.2f} min; target ≤ 15 min); max |ΔS| vs plain {float(err):.2e}")
    print(f"[last block] speed-up closed form / plain: {per_feature_plain * args.features / t_closed:.0f}x (target ≥ 50x)")
    steerable = closed_all.steerable(spec.threshold)
    print(f"[last block] fraction steerable in this random model: {float(steerable.float().mean()):.4f}")
    del run

    # 2. Middle block: batched suffix vs plain, in (feature, image) pairs per second.
    run = SteeringRun(backbone, "blocks.6.resid_post", dictionary, pixels, text, spec)
    sample = torch.arange(args.suffix_sample) * (args.features // max(1, args.suffix_sample))
    plain, t_plain = timed(lambda: run.scores(sample[: args.plain_sample], engine="plain", progress=False))
    run._codes(cls_only=False)  # the one-off clean encode is shared by every chunk; not per-pair cost
    suffix, t_suffix = timed(lambda: run.scores(sample, engine="suffix", feature_batch=len(sample), progress=False))
    err = (suffix.steerability[: args.plain_sample] - plain.steerability).abs().max()
    plain_rate = args.plain_sample * args.images / t_plain
    suffix_rate = len(sample) * args.images / t_suffix
    print(f"[middle block] plain {plain_rate:.1f} pairs/s, batched suffix {suffix_rate:.1f} pairs/s, "
          f"ratio {suffix_rate / plain_rate:.2f}x (target ≥ 3x); max |ΔS| vs plain {float(err):.2e}")


if __name__ == "__main__":
    main()
