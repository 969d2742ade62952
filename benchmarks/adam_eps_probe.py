"""Is Adam's eps damping the paper loss's small gradients? (issue 15, peers.md §17)

Runs `benchmarks/peers.py` with every `torch.optim.Adam` built with the given eps instead of the default 1e-8,
and prints the pre-clip gradient norms it saw (min / max per quarter of the run), to tell whether a clip bound.
The paper loss's gradient norm is 0.06–0.27 over the first steps at d=768 (`grad_norm_probe_d768.txt`), i.e.
≈ 1e-5 per element, so eps could matter late in training when gradients shrink; this measures whether it does.

    PYTHONPATH=src python benchmarks/adam_eps_probe.py 1e-12 --store S768 --arch relu --expansion 16 \
        --tokens 1000000 --evals 5 --held-out-images 100 --threads 1 --libraries clipsteer \
        --lambdas clipsteer=1e-4 --max-grad-norm 1.0
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: adam_eps_probe.py EPS <benchmarks/peers.py arguments>")
    eps = float(sys.argv[1])
    torch.optim.Adam = functools.partial(torch.optim.Adam, eps=eps)  # type: ignore[misc]  # clipsteer's make_adam calls it
    norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(*args: object, **kwargs: object) -> torch.Tensor:  # the pre-clip norms, to see if it binds
        total = clip(*args, **kwargs)  # type: ignore[arg-type]
        norms.append(float(total))
        return total

    torch.nn.utils.clip_grad_norm_ = recording_clip  # type: ignore[assignment]
    import peers

    peers.main(sys.argv[2:])
    if norms:
        quarters = [norms[i * len(norms) // 4: (i + 1) * len(norms) // 4] for i in range(4)]
        print("pre-clip gradient norm, min / max per quarter of the clipped steps:",
              "  ".join(f"{min(q):.2e}/{max(q):.2e}" for q in quarters if q))


if __name__ == "__main__":
    main()
