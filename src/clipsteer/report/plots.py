"""The report's plots as PNG bytes (matplotlib, imported lazily and drawn off-screen).

Each function takes the report's views (no file access) and returns the figure's PNG bytes; the
renderer decides where they go.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from clipsteer.report.sources import GroupResult, Quality, Steering
from clipsteer.steer.results import StrengthCurve

BASIS_NAMES = {"sae": "SAE features", "neurons": "neurons", "random_sae": "SAE, random model (null)",
               "random_neurons": "neurons, random model (null)"}
BASIS_COLOURS = {"sae": "tab:blue", "neurons": "tab:orange", "random_sae": "tab:green", "random_neurons": "tab:red"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def quality_plot(names: Sequence[str], qualities: Sequence[Quality]) -> bytes:
    """Per SAE: L0 of CLS vs patch tokens, explained variance and dead fraction, CE recovered when known."""
    plt = _pyplot()
    x = list(range(len(names)))
    fig, (l0, ev) = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.4
    l0.bar([i - width / 2 for i in x], [q.l0_cls or 0 for q in qualities], width, label="CLS token")
    l0.bar([i + width / 2 for i in x], [q.l0_patches or 0 for q in qualities], width, label="patch tokens")
    l0.set_ylabel("L0 (active features per token)")
    l0.legend(fontsize=8)
    ev.plot(x, [q.explained_variance for q in qualities], marker="o", label="explained variance")
    ev.plot(x, [q.dead_fraction for q in qualities], marker="s", label="dead fraction")
    ce = [q.ce_recovered_pct for q in qualities]
    if any(c is not None for c in ce):
        ev.plot(x, [c / 100 if c is not None else math.nan for c in ce], marker="^", label="CE recovered / 100")
    ev.set_ylim(bottom=0)
    ev.legend(fontsize=8)
    for ax in (l0, ev):
        ax.set_xticks(x, names, fontsize=8, rotation=15 if len(names) > 3 else 0)
        ax.set_xlim(-0.8, len(names) - 0.2)
    return _png(fig)


def density_plot(edges: Sequence[float], counts: Sequence[int], dead: int, title: str) -> bytes:
    """Histogram of log10 firing frequency of the features that fire at all."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    if edges:
        ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges[:-1], edges[1:], strict=True)], align="edge")
    ax.set_xlabel("log10 firing frequency (share of tokens)")
    ax.set_ylabel("features")
    ax.set_title(f"{title} ({dead} dead)", fontsize=9)
    return _png(fig)


def steerability_histogram(steering: Steering, title: str) -> bytes:
    """Distribution of S per basis on a log axis, with the steerable threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    values = [max(r.steerability, 1e-8) for rows in steering.rows.values() for r in rows]
    lo, hi = math.log10(min(values)), math.log10(max(max(values), steering.threshold * 2))
    bins = [10 ** (lo + (hi - lo) * i / 30) for i in range(31)]
    for basis, rows in steering.rows.items():
        ax.hist([max(r.steerability, 1e-8) for r in rows], bins=bins, histtype="step", linewidth=1.5,
                density=True, label=f"{BASIS_NAMES.get(basis, basis)} ({len(rows)})", color=BASIS_COLOURS.get(basis))
    ax.axvline(steering.threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {steering.threshold:g}")
    ax.set_xscale("log")
    ax.set_xlabel("steerability S = Σ_v Δ(v)²")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def fraction_plot(names: Sequence[str], steerings: Sequence[Steering]) -> bytes:
    """Fraction steerable per SAE (layer) for SAE features, neurons and the random-model nulls."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bases = [b for b in BASIS_NAMES if any(b in s.fractions for s in steerings)]
    width = 0.8 / max(len(bases), 1)
    for k, basis in enumerate(bases):
        xs = [i + (k - (len(bases) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, [s.fractions.get(basis, math.nan) for s in steerings], width, label=BASIS_NAMES[basis],
               color=BASIS_COLOURS[basis])
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_xlim(-0.8, len(names) - 0.2)
    ax.set_ylabel("fraction steerable")
    ax.legend(fontsize=7)
    return _png(fig)


def alpha_sweep_plot(steering: Steering, title: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for basis, by_alpha in steering.alpha_sweep.items():
        alphas = sorted(by_alpha)
        ax.plot(alphas, [by_alpha[a] for a in alphas], marker="o", label=BASIS_NAMES.get(basis, basis),
                color=BASIS_COLOURS.get(basis))
    ax.set_xscale("log")
    ax.set_xlabel("α (clamp value)")
    ax.set_ylabel("fraction steerable")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def strength_curve_plot(curves: dict[int, StrengthCurve], title: str) -> bytes:
    """S and P of chosen features against α."""
    plt = _pyplot()
    fig, (s_ax, p_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    for feature, curve in curves.items():
        s_ax.plot(curve.alpha, curve.steerability, marker="o", markersize=3, label=f"#{feature}")
        p_ax.plot(curve.alpha, curve.power, marker="o", markersize=3, label=f"#{feature}")
    s_ax.set_ylabel("steerability S")
    p_ax.set_ylabel("steering power P")
    for ax in (s_ax, p_ax):
        ax.set_xlabel("α")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def group_plot(result: GroupResult) -> bytes:
    """Per-group accuracy before and after suppression (and per layer, when the sweep is recorded)."""
    plt = _pyplot()
    panels = 2 if result.per_layer else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 3.2), squeeze=False)
    bars = axes[0][0]
    names = list(result.groups) or list(result.metrics)
    pairs = [result.groups.get(n) or result.metrics[n] for n in names]
    xs = range(len(names))
    bars.bar([x - 0.2 for x in xs], [p[0] for p in pairs], 0.4, label="before")
    bars.bar([x + 0.2 for x in xs], [p[1] for p in pairs], 0.4, label="after suppression")
    bars.set_xticks(list(xs), names, fontsize=7, rotation=20)
    bars.set_ylabel("accuracy")
    bars.legend(fontsize=7)
    if result.per_layer:
        ax = axes[0][1]
        layers = sorted(result.per_layer)
        for metric in sorted({m for row in result.per_layer.values() for m in row}):
            ax.plot(layers, [result.per_layer[la].get(metric, math.nan) for la in layers], marker="o", label=metric)
        ax.set_xticks(layers)
        ax.set_xlabel("layer")
        ax.legend(fontsize=7)
    return _png(fig)
