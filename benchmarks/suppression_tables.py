"""Tables of `debias` / `typographic-defense` runs over SAE seeds: mean ± sd per layer and method.

Each argument is a run folder (its `result.json` is read as a `SuppressionResult`). Folders named
`<name>_L<layers>` are parts of one run at different layers (same splits) and are merged; runs of one
experiment on one dataset are then treated as SAE seeds. Numbers are on the report split, in points
(accuracy × 100): the metric k was chosen by (WGA / object accuracy under attack), the guard metric
(accuracy / clean accuracy), their changes from the unedited model, and for debiasing the share of the
accuracy–WGA gap closed.

    python benchmarks/suppression_tables.py runs/m/background_seed0 runs/m/background_seed1 ...
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from clipsteer.experiments.suppression import SuppressionResult, metric

METHOD_ORDER = ("sae", "random", "neurons")


def methods_of(layer) -> list[str]:
    return sorted(layer.methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))


def pm(values: list[float]) -> str:
    v = 100 * np.array(values)
    return f"{v.mean():5.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:4.1f}"


def table(results: list[SuppressionResult]) -> str:
    first = results[0]
    score, guard = first.score, first.guard
    base = [r.baseline.report for r in results]
    gap = first.experiment == "debias"

    def row(reports: list) -> str:
        return " ".join(f"{name} {pm([r[name] for r in map(first.values, reports)])}"
                        for name in first.values(reports[0]))

    lines = [f"## {first.experiment} on {first.dataset}: {len(results)} SAE seeds (report split, points, mean ± sd)",
             f"{first.baseline.method}: {row(base)}"]
    references = dict.fromkeys(name for r in results for name in r.references)
    lines += [f"{name}: {row([r.references[name].report for r in results if name in r.references])}"
              for name in references]
    lines.append(f"| site | method | seeds | k, tokens (per seed) | {score} | Δ{score} | {guard} | Δ{guard} |"
                 + (" gap closed % |" if gap else ""))
    lines.append("|---" * (8 + gap) + "|")
    sites = dict.fromkeys(layer.site for r in results for layer in r.layers)
    for site in sites:  # runs may cover different layers and controls (e.g. a sweep for one seed only)
        at_site = [(r, layer) for r in results for layer in r.layers if layer.site == site]
        for method in methods_of(at_site[0][1]):
            runs = [(layer.methods[method], r.baseline.report) for r, layer in at_site if method in layer.methods]
            ms, bs = [m.report for m, _ in runs], [b for _, b in runs]
            choice = ", ".join(f"{m.k}/{m.tokens}" for m, _ in runs)
            cells = [pm([metric(m, score) for m in ms]),
                     pm([metric(m, score) - metric(b, score) for m, b in zip(ms, bs, strict=True)]),
                     pm([metric(m, guard) for m in ms]),
                     pm([metric(m, guard) - metric(b, guard) for m, b in zip(ms, bs, strict=True)])]
            if gap:
                cells.append(pm([1 - (metric(m, guard) - metric(m, score)) / (metric(b, guard) - metric(b, score))
                                 for m, b in zip(ms, bs, strict=True)]))
            lines.append(f"| {site} | {method} | {len(runs)} | {choice} | " + " | ".join(cells) + " |")
    lines.append("best layer on the choose split, per seed: " + ", ".join(r.best_site for r in results))
    return "\n".join(lines)


def merge(parts: list[SuppressionResult]) -> SuppressionResult:
    """One result from parts of a run that differ only in their layers (the baseline must agree)."""
    first = parts[0]
    assert all(p.baseline == first.baseline for p in parts), "parts disagree on the baseline"
    layers = tuple(layer for p in parts for layer in p.layers)
    best = max(layers, key=lambda layer: metric(layer.methods["sae"].choose, first.score))
    return dataclasses.replace(first, layers=layers, best_site=best.site)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    groups: dict[str, list[SuppressionResult]] = {}
    for run in args.runs:
        groups.setdefault(run.name.rsplit("_L", 1)[0], []).append(SuppressionResult.read(run))
    merged = [merge(parts) for parts in groups.values()]
    for key in dict.fromkeys((r.experiment, r.dataset) for r in merged):
        print(table([r for r in merged if (r.experiment, r.dataset) == key]), "\n")


if __name__ == "__main__":
    main()
