"""Plots of steerability results (matplotlib imported lazily)."""

from __future__ import annotations

import io
from pathlib import Path

from clipsteer.atomic import atomic_write_bytes
from clipsteer.steer.results import SteerabilitySummary


def plot_strength_curves(summary: SteerabilitySummary, path: Path) -> Path:
    """The paper's strength curves: S and P of chosen features against α (in the paper's units when recorded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    curves = summary.strength_curves
    paper = all(c.paper_alpha for c in curves.values())
    for feature, curve in curves.items():
        xs = curve.paper_alpha if paper else curve.alpha
        left.plot(xs, curve.steerability, marker="o", markersize=3, label=f"feature {feature}")
        right.plot(xs, curve.power, marker="o", markersize=3, label=f"feature {feature}")
    for axis, name in ((left, "steerability S = Σ_v Δ(v)²"), (right, "power P = max_v Δ(v)")):
        axis.set_xscale("symlog", linthresh=5)
        if curves:  # tick exactly the α measured (symlog's own ticks collide around 0)
            first = next(iter(curves.values()))
            ticks = first.paper_alpha if paper else first.alpha
            axis.set_xticks(ticks, [f"{a:g}" for a in ticks], fontsize=7)
        axis.set_xlabel(f"α, paper units (× {summary.alpha / 150:.3g} here)" if paper else "α")
        axis.set_ylabel(name)
    left.axhline(summary.threshold, color="grey", linestyle=":", linewidth=1)
    left.legend(fontsize=7)
    fig.suptitle(f"{summary.site}: τ = {summary.temperature:.3g}, |V| = {summary.vocabulary_size}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
