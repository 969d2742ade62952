"""Cost of Backbone.capture vs bare transformers forwards (ViT-B/32 architecture, random weights).

Prints images/s for: the full HF forward (`get_image_features`), a bare HF forward stopped after
block `layer` (embeddings + pre-LN + blocks[:layer+1], no hooks), and `capture` at
`blocks.{layer}.resid_post`. Target: capture ≤ 1.05× the stopped bare forward's time.
Runs are interleaved and the best of `repeats` is kept, so background load affects all three alike.

    python benchmarks/backbone_capture.py [--layer 8] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from clipsteer.models.testing import random_vit_b32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    backbone = random_vit_b32(seed=0)
    model, vision = backbone.model, backbone.vision
    pixels = torch.randn(args.batch, 3, 224, 224)

    @torch.no_grad()
    def full_forward() -> None:
        model.get_image_features(pixel_values=pixels)

    @torch.no_grad()
    def stopped_forward() -> None:
        hidden = vision.pre_layrnorm(vision.embeddings(pixels))
        for block in vision.encoder.layers[: args.layer + 1]:
            hidden = block(hidden, None)

    def capture() -> None:
        backbone.capture(pixels, [f"blocks.{args.layer}.resid_post"])

    runs = {"full HF forward": full_forward, f"bare forward to block {args.layer}": stopped_forward,
            f"capture blocks.{args.layer}.resid_post": capture}
    for fn in runs.values():  # warm-up
        fn()
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)

    print(f"ViT-B/32 random weights, batch {args.batch}, {torch.get_num_threads()} threads, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"  {name:<36} {args.batch / seconds:8.1f} images/s  ({seconds * 1e3:7.1f} ms/batch)")
    stopped = best[f"bare forward to block {args.layer}"]
    ratio = best[f"capture blocks.{args.layer}.resid_post"] / stopped
    print(f"capture / stopped bare forward time: {ratio:.3f}  (target ≤ 1.05)")
    print(f"capture speed-up over the full forward: {best['full HF forward'] / best[f'capture blocks.{args.layer}.resid_post']:.2f}x")


if __name__ == "__main__":
    main()
