"""Generator throughput: pretraining images (image + caption + labels + patch masks) per second on one core.

    python benchmarks/world_generate.py [--n 4000]
"""

from __future__ import annotations

import argparse
import time

from clipsteer.world.config import WorldConfig
from clipsteer.world.distribution import pretraining_scene
from clipsteer.world.evalsets import scene_maker
from clipsteer.world.generate import render_indices, render_scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4000)
    args = parser.parse_args()
    cfg = WorldConfig()
    render_indices(lambda i: pretraining_scene(0, i, cfg), range(50), cfg)  # warm caches
    t = time.perf_counter()
    render_indices(lambda i: pretraining_scene(1, i, cfg), range(args.n), cfg)
    dt = time.perf_counter() - t
    print(f"pretraining stream: {args.n / dt:,.0f} img/s ({args.n} images in {dt:.2f} s, one process)")
    make = scene_maker("typographic", "test", cfg)
    t = time.perf_counter()
    n = args.n // 4
    for variant in ("clean", "attacked", "blank"):
        render_scenes([make(i)[variant] for i in range(n)], cfg)
    dt = time.perf_counter() - t
    print(f"typographic triples: {3 * n / dt:,.0f} img/s")


if __name__ == "__main__":
    main()
