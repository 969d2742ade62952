"""Tables of `debias` / `typographic-defense` runs over SAE seeds: mean ± sd per layer and method.

Each argument is a run folder (its `result.json` is read through the typed readers). Folders named
`<name>_L<layers>` are parts of one run at different layers (same splits) and are merged; runs on one
dataset are then treated as SAE seeds. Numbers are on the report split, in points (accuracy × 100).

    python benchmarks/suppression_tables.py runs/m/background_seed0 runs/m/background_seed1 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from clipsteer.experiments.debias import DebiasResult
from clipsteer.experiments.typographic import TypographicResult

METHOD_ORDER = ("sae", "random", "neurons")


def methods_of(layer) -> list[str]:
    return sorted(layer.methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))


def pm(values: list[float]) -> str:
    v = 100 * np.array(values)
    return f"{v.mean():5.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:4.1f}"


def debias_table(results: list[DebiasResult]) -> str:
    z = [r.zero_shot.report for r in results]
    lines = [f"## {results[0].dataset}: {len(results)} SAE seeds (report split, points, mean ± sd)",
             f"zero-shot: WGA {pm([m.wga for m in z])}  avg {pm([m.avg for m in z])}  "
             f"gap {pm([m.avg - m.wga for m in z])}"]
    if results[0].orth_proj is not None:
        o = [r.orth_proj.report for r in results if r.orth_proj is not None]
        lines.append(f"Orth-Proj: WGA {pm([m.wga for m in o])}  avg {pm([m.avg for m in o])}")
    lines.append("| site | method | k, tokens (per seed) | WGA | ΔWGA | avg | Δavg | gap closed % |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for n, layer in enumerate(results[0].layers):
        for method in methods_of(layer):
            ms = [r.layers[n].methods[method] for r in results]
            wga = [m.report.wga for m in ms]
            avg = [m.report.avg for m in ms]
            d_wga = [m.report.wga - b.wga for m, b in zip(ms, z, strict=True)]
            d_avg = [m.report.avg - b.avg for m, b in zip(ms, z, strict=True)]
            closed = [(1 - (m.report.avg - m.report.wga) / (b.avg - b.wga)) for m, b in zip(ms, z, strict=True)]
            choice = ", ".join(f"{m.k}/{m.tokens}" for m in ms)
            lines.append(f"| {layer.site} | {method} | {choice} | {pm(wga)} | {pm(d_wga)} | {pm(avg)} | {pm(d_avg)} "
                         f"| {pm(closed)} |")
    lines.append("best layer on the choose split, per seed: " + ", ".join(r.best_site for r in results))
    return "\n".join(lines)


def typographic_table(results: list[TypographicResult]) -> str:
    b = [r.no_defense.report for r in results]
    lines = [f"## {results[0].dataset}: {len(results)} SAE seeds (report split, points, mean ± sd)",
             f"no defense: OCA {pm([m.oca for m in b])}  TCR {pm([m.tcr for m in b])}  "
             f"clean {pm([m.clean_accuracy for m in b])}  blank-note ceiling {pm([m.blank_accuracy for m in b])}",
             "| site | method | k, tokens (per seed) | OCA | ΔOCA | TCR | clean | Δclean |", "|---|---|---|---|---|---|---|---|"]
    for n, layer in enumerate(results[0].layers):
        for method in methods_of(layer):
            ms = [r.layers[n].methods[method] for r in results]
            lines.append(f"| {layer.site} | {method} | {', '.join(f'{m.k}/{m.tokens}' for m in ms)} "
                         f"| {pm([m.report.oca for m in ms])} "
                         f"| {pm([m.report.oca - x.oca for m, x in zip(ms, b, strict=True)])} "
                         f"| {pm([m.report.tcr for m in ms])} | {pm([m.report.clean_accuracy for m in ms])} "
                         f"| {pm([m.report.clean_accuracy - x.clean_accuracy for m, x in zip(ms, b, strict=True)])} |")
    lines.append("best layer on the choose split, per seed: " + ", ".join(r.best_site for r in results))
    return "\n".join(lines)


def merge(parts: list):
    """One result from parts of a run that differ only in their layers (the baseline must agree)."""
    first = parts[0]
    baseline = "zero_shot" if isinstance(first, DebiasResult) else "no_defense"
    assert all(getattr(p, baseline) == getattr(first, baseline) for p in parts), "parts disagree on the baseline"
    layers = tuple(layer for p in parts for layer in p.layers)
    score = (lambda m: m.choose.wga) if isinstance(first, DebiasResult) else (lambda m: m.choose.oca)
    best = max(layers, key=lambda layer: score(layer.methods["sae"]))
    return dataclasses.replace(first, layers=layers, best_site=best.site)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    groups: dict[str, list] = {}
    for run in args.runs:
        path = run / "result.json"
        reader = TypographicResult if "no_defense" in json.loads(path.read_text()) else DebiasResult
        groups.setdefault(run.name.rsplit("_L", 1)[0], []).append(reader.from_json(path))
    merged = [merge(parts) for parts in groups.values()]
    debias = [r for r in merged if isinstance(r, DebiasResult)]
    typographic = [r for r in merged if isinstance(r, TypographicResult)]
    for dataset in dict.fromkeys(r.dataset for r in debias):
        print(debias_table([r for r in debias if r.dataset == dataset]), "\n")
    for dataset in dict.fromkeys(r.dataset for r in typographic):
        print(typographic_table([r for r in typographic if r.dataset == dataset]), "\n")


if __name__ == "__main__":
    main()
