"""The CLS-only last block side by side with the whole block: `Backbone.encode_from` (which computes only the
last block's CLS row) against running every row of the last block, on the same hidden states, interleaved.

Sites: the toy CLIP resumed from blocks.2 (one block left) and a random-weight ViT-B/32 resumed from blocks.10
(one block left), i.e. the steerability suffix engine's work one layer before the last. Prints per-model median
times, the ratio (whole ÷ CLS-only) and the largest difference between the embeddings.

    python benchmarks/cls_last_block.py [--rows 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from clipsteer.models.backbone import Backbone
from clipsteer.models.loading import resolve_model
from clipsteer.models.testing import random_vit_b32


def whole_block(backbone: Backbone, site: str, hidden: torch.Tensor) -> torch.Tensor:
    """The embedding from every row of the remaining blocks (the path before the CLS-only block)."""
    start = backbone.site(site).layer + 1
    with torch.no_grad():
        return backbone._head(backbone._run_blocks(hidden, start, backbone.n_layers)[:, 0])


def compare(name: str, backbone: Backbone, site: str, rows: int, rounds: int) -> None:
    pixels = torch.randn(rows, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(0))
    hidden = backbone.capture(pixels, [site])[site]
    fast_t, whole_t = [], []
    for r in range(rounds):  # interleaved, first mover alternating
        order = [("fast", lambda: backbone.encode_from(site, hidden)), ("whole", lambda: whole_block(backbone, site, hidden))]
        for label, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            out = fn()
            (fast_t if label == "fast" else whole_t).append(time.perf_counter() - start)
            if label == "fast":
                fast = out
            else:
                whole = out
    fast_m, whole_m = statistics.median(fast_t), statistics.median(whole_t)
    print(f"{name} from {site}, {rows} rows: CLS-only {fast_m * 1e3:.0f} ms, whole block {whole_m * 1e3:.0f} ms, "
          f"ratio {whole_m / fast_m:.2f}×, max |Δ| {(fast - whole).abs().max().item():.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    compare("toy CLIP", Backbone.from_pretrained(resolve_model(None)), "blocks.2.resid_post", args.rows, args.rounds)
    compare("ViT-B/32 (random)", random_vit_b32(seed=0), "blocks.10.resid_post", args.rows // 4, args.rounds)


if __name__ == "__main__":
    main()
