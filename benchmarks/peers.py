"""clipsteer against the peer SAE trainers, side by side on the same activations.

Libraries: clipsteer (default recipe, and `--recipe paper`), SAELens, overcomplete, dictionary_learning,
saev (ReLU only) and eai-sparsify (TopK only); peers that are not installed are skipped with a note.
Install them with `pip install -e .[peers] torch==2.13.0` in a separate environment, then remove the
torchvision they pull in (it breaks `import transformers`); overcomplete's import of torchvision is
satisfied by an empty stub module (`torchvision_stub`).

Data: rows of one clipsteer activation store, read once into RAM. The last `--held-out-images` images
are held out for evaluation; every library gets exactly the same float32 batches of `--batch` rows
(one seeded `TensorSource` stream).

How each library is driven (one "step" = one optimiser update on one batch, what its own loop does):
- clipsteer: `SAEUpdater.step` (the call `Trainer._loop` makes), after `Trainer._initialise`.
- SAELens: its generic `SAETrainer`; a step is the body of `SAETrainer.fit` (`_train_step` + counters).
- overcomplete: its `train_sae(model, [batch], criterion, optimizer, nb_epochs=1)` called per step.
- dictionary_learning: `trainer.update(step, x)`, as its `trainSAE` does.
- saev: the loop body of `saev.training.train` (it only trains from its own disk format).
- sparsify: the loop body of its `Trainer.fit` with Adam at the shared lr (its trainer needs an HF model).
All: Adam (0.9, 0.999) at one constant lr, no warm-up, fp32. Everything else is each library's default.

Measurements:
- throughput: every round runs one step of each library on the same batch, the first mover rotating;
  each step is timed alone; the ratio clipsteer/peer is taken per round; medians and IQRs are reported.
- quality: EV = 1 − Σ‖v − x̂‖² / Σ‖v − mean(v)‖² on the held-out rows v (x̂ from each library's own
  encode/decode), L0 = mean non-zero codes per row, dead = fraction of features that never fire on v.
  TopK compares at equal k; ReLU along an EV-vs-L0 frontier from `--lambdas` (each library's own λ
  units, one sweep per library), interpolated in log L0 at the L0 values the libraries share.
- memory: peak RSS (on a GPU: peak allocated device memory) of a separate process per library running a few
  steps (`--memory`).

`--device cuda` trains every library on the GPU (each step timed after a synchronize); `benchmarks/peers_gpu.sh`
runs the d=768 cells that way. `--max-grad-norm` and `--autocast-bf16` change clipsteer's trainer settings.

    python benchmarks/peers.py --store /work/artifacts/acts/blocks.2.resid_post --arch topk \
        --expansion 16 --tokens 4000000 --out benchmarks/results/peers_d128_topk_x16
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clipsteer.activations.store import ActivationStore
from clipsteer.atomic import atomic_write_json
from clipsteer.sae import ObjectiveConfig, SAEConfig, SAERecipe, TensorSource, Trainer, TrainerConfig
from clipsteer.sae.recipe import RECIPES

sys.path.insert(0, str(Path(__file__).parent))
from peer_adapters import DEFAULT_LAMBDA, FACTORIES, Library, Setting  # noqa: E402

PEER_MODULES = {"saelens": "sae_lens", "overcomplete": "overcomplete", "dictionary_learning": "dictionary_learning",
                "saev": "saev", "sparsify": "sparsify"}
ARCH_SUPPORT = {"saev": ("relu",), "sparsify": ("topk",)}
EVAL_CHUNK = 8192


# ----------------------------------------------------------------------------------------- data
def load_rows(store_dir: str, held_out_images: int, max_train_rows: int | None) -> tuple[Tensor, Tensor]:
    """(train [n, d], held-out [m, d]) float32 rows; held-out = the store's last `held_out_images` images."""
    store = ActivationStore.open(store_dir)
    t = store.n_tokens_per_image
    if not 0 < held_out_images < store.n_images:
        raise ValueError(f"--held-out-images={held_out_images}: expected 1..{store.n_images - 1} ({store_dir} has "
                         f"{store.n_images} images)")
    split = store.n_rows - held_out_images * t
    train_stop = split if max_train_rows is None else min(split, max_train_rows)
    return store.read(0, train_stop), store.read(split, store.n_rows)


# ----------------------------------------------------------------------------------------- adapters
# clipsteer with one setting of the default recipe changed, for ablations (`--libraries clipsteer-ln_mse ...`)
ABLATIONS = {
    "ln_mse": replace(RECIPES["default"], reconstruction="mse"),
    "raw_paper": replace(RECIPES["default"], normalization="none"),
    "raw_mse": replace(RECIPES["default"], normalization="none", reconstruction="mse"),
    "const_mse": replace(RECIPES["default"], normalization="constant_scale", reconstruction="mse"),
}


class Clipsteer(Library):
    def __init__(self, s: Setting, lam: float, sample: Tensor, recipe: str) -> None:
        self.name = "clipsteer" if recipe == "default" else f"clipsteer-{recipe}"
        self.driven = "SAEUpdater.step (Trainer's loop body)"
        if recipe not in RECIPES | ABLATIONS:
            raise ValueError(f"--libraries clipsteer-{recipe}: expected clipsteer, or clipsteer- followed by one of "
                             f"{sorted(RECIPES | ABLATIONS)}")
        preset = (RECIPES | ABLATIONS)[recipe]
        sae_config = SAEConfig(d_in=s.d, d_sae=s.width, architecture=s.arch, k=s.k if s.arch == "topk" else None,
                               normalization=preset.normalization)
        objective = ObjectiveConfig(sparsity_coefficient=lam, reconstruction=preset.reconstruction,
                                    sparsity_warmup_steps=preset.sparsity_warmup_steps
                                    if s.sparsity_warmup_steps is None else s.sparsity_warmup_steps)
        overrides = {"dead_feature_window": s.dead_feature_window,  # None: the recipe's
                     "adam_betas": None if s.adam_beta2 is None else (TrainerConfig().adam_betas[0], s.adam_beta2)}
        config = TrainerConfig(tokens_per_batch=s.batch, lr=s.lr, lr_warmup_steps=0, progress=False, seed=s.seed,
                               encoder_init=preset.encoder_init, device=s.device, autocast_bf16=s.autocast_bf16,
                               max_grad_norm=preset.max_grad_norm if s.max_grad_norm is None else s.max_grad_norm or None,
                               gradient_rescale=s.gradient_rescale, bias_lr_factor=s.bias_lr_factor,
                               **{key: value for key, value in overrides.items() if value is not None})
        trainer = Trainer([SAERecipe("bench", sae_config, objective)], TensorSource(sample), config)
        (self.updater,) = trainer._build_updaters()
        trainer._initialise([self.updater])
        self.sae = self.updater.sae
        if s.encoder_scale is not None:  # W_enc = c·W_decᵀ after the fit, so the ratio of norms is the fitted c
            assert s.arch == "topk", "--encoder-scale applies to TopK (ReLU's codes also depend on b_enc)"
            with torch.no_grad():
                self.sae.W_enc.mul_(s.encoder_scale * self.sae.W_dec.norm() / self.sae.W_enc.norm())
        self.lr = s.lr
        self.n = 0

    def step(self, x: Tensor) -> None:
        self.updater.step(x, self.n, self.lr)
        self.n += 1

    @torch.no_grad()
    def reconstruct(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.sae.eval()
        codes = self.sae.encode(v)
        return self.sae.decode(codes, x=v), (codes > 0).sum(-1), (codes > 0).any(0)



# ----------------------------------------------------------------------------------------- harness
@dataclass
class Track:
    """One library's run: its step times and held-out evaluations."""

    library: Library
    times: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def evaluate(library: Library, v: Tensor, width: int) -> dict[str, float]:
    """Held-out EV (one formula for all), mean L0 and the fraction of features never firing on v."""
    resid, l0, fired = 0.0, 0.0, torch.zeros(width, dtype=torch.bool, device=v.device)
    for chunk in v.split(EVAL_CHUNK):
        recon, nonzero, fired_chunk = library.reconstruct(chunk)
        resid += float((recon.float() - chunk).pow(2).sum())
        l0 += float(nonzero.float().sum())
        fired |= fired_chunk.to(v.device)
    total = float((v - v.mean(dim=0)).pow(2).sum())
    return {"ev": 1 - resid / total, "l0": l0 / len(v), "dead": float((~fired).float().mean())}


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a host clock read after it times the step and not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(library: Library, x: Tensor, device: str) -> float:
    """One step of `library` on x, in seconds, with the device idle before and after."""
    synchronize(device)
    start = time.perf_counter()
    library.step(x)
    synchronize(device)
    return time.perf_counter() - start


def run_rounds(tracks: list[Track], source: TensorSource, s: Setting, steps: int, held_out: Tensor,
               eval_at: set[int], progress: bool = True) -> None:
    """`steps` rounds: every library steps once on the round's batch (first mover rotated), timed alone."""
    stream = source.batches(s.batch, s.seed)
    for r in range(steps):
        x = next(stream)
        order = tracks[r % len(tracks):] + tracks[:r % len(tracks)]
        for track in order:
            track.times.append(timed_step(track.library, x, s.device))
        if r + 1 in eval_at:
            for track in tracks:
                track.evals.append({"tokens": (r + 1) * s.batch, **evaluate(track.library, held_out, s.width)})
        if progress and (r + 1) % 10 == 0:
            print(f"  round {r + 1}/{steps}  load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = np.percentile(np.asarray(values), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def throughput_rows(tracks: list[Track], batch: int, skip: int) -> list[dict[str, Any]]:
    """tok/s per library (median step) and the per-round ratio clipsteer/peer (median, IQR)."""
    reference = tracks[0]
    rows = []
    for track in tracks:
        times = track.times[skip:]
        row: dict[str, Any] = {"library": track.library.name, "driven": track.library.driven,
                               "tok_s": batch / float(np.median(times)), "timed_steps": len(times)}
        if track is not reference and reference.library.name.startswith("clipsteer"):
            ratios = [p / c for c, p in zip(reference.times[skip:], times, strict=True)]
            row["ratio_q1"], row["ratio"], row["ratio_q3"] = quartiles(ratios)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------- ReLU frontier
def ev_at_l0(points: list[tuple[float, float]], l0: float) -> float | None:
    """EV at `l0` by linear interpolation in log L0 between a library's (L0, EV) points; None outside."""
    pts = sorted(points)
    for (a, ea), (b, eb) in zip(pts, pts[1:], strict=False):
        if a <= l0 <= b and b > a:
            t = (math.log(l0) - math.log(a)) / (math.log(b) - math.log(a))
            return ea + t * (eb - ea)
    for a, ea in pts:
        if math.isclose(a, l0, rel_tol=1e-9):
            return ea
    return None


def frontier(quality: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """ReLU: each library's final (L0, EV) points (one per λ), every library read at every library's L0 values
    (its own points exactly, the others' interpolated; None outside a library's span)."""
    points: dict[str, list[tuple[float, float]]] = {}
    for entry in quality:
        if entry["evals"]:
            last = entry["evals"][-1]
            points.setdefault(entry["library"].split(" ")[0], []).append((last["l0"], last["ev"]))
    every_l0 = sorted({l0 for pts in points.values() for l0, _ in pts})
    return {f"{l0:.1f}": {lib: ev_at_l0(pts, l0) for lib, pts in points.items()} for l0 in every_l0}


# ----------------------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    dists = {"clipsteer": "clipsteer", "saelens": "sae-lens", "overcomplete": "overcomplete",
             "dictionary_learning": "dictionary-learning", "saev": "saev", "sparsify": "eai-sparsify"}
    for lib, dist in dists.items():
        try:
            versions[lib] = version(dist)
        except PackageNotFoundError:
            versions[lib] = None
    here = Path(__file__).parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here).stdout.strip()
    if commit and subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, cwd=here).stdout.strip():
        commit += "-dirty"  # the run used uncommitted changes on top of that commit
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "gpu": gpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_start": os.getloadavg(), "platform": platform.platform(), "versions": versions,
            "clipsteer_commit": commit}


# ----------------------------------------------------------------------------------------- main
def default_lambda(name: str) -> float:
    return ObjectiveConfig().sparsity_coefficient if name.startswith("clipsteer") else DEFAULT_LAMBDA[name]


def build(name: str, s: Setting, lam: float, sample: Tensor) -> Library:
    if name.startswith("clipsteer"):
        return Clipsteer(s, lam, sample, recipe=name.partition("-")[2] or "default")
    return FACTORIES[name](s, lam, sample)


def available(name: str, arch: str) -> str | None:
    """None when `name` can run `arch` here, else the reason it is skipped."""
    if name.startswith("clipsteer"):
        return None
    if name not in PEER_MODULES:
        raise ValueError(f"--libraries: unknown library {name!r}; expected clipsteer, clipsteer-paper or one of "
                         f"{sorted(PEER_MODULES)}")
    if arch not in ARCH_SUPPORT.get(name, ("relu", "topk")):
        return f"{name} has no {arch} trainer"
    if importlib.util.find_spec(PEER_MODULES[name]) is None:
        return f"{name} is not installed (pip install -e .[peers])"
    return None


def parse_lambdas(spec: list[str]) -> dict[str, list[float]]:
    """`lib=1e-4,3e-4` items → {lib: [λ, ...]}."""
    out = {}
    for item in spec:
        lib, _, values = item.partition("=")
        if not values:
            raise ValueError(f"--lambdas {item!r}: expected LIBRARY=λ1,λ2,...")
        out[lib] = [float(v) for v in values.split(",")]
    return out


def memory_probe(args: argparse.Namespace, name: str, lam: float) -> float | None:
    """Peak memory growth (MiB) of a fresh process that loads the data and runs 3 steps of `name`: host RSS on
    the CPU, allocated device memory on a GPU."""
    cmd = [sys.executable, __file__, "--store", args.store, "--arch", args.arch, "--expansion", str(args.expansion),
           "--k", str(args.k), "--batch", str(args.batch), "--held-out-images", str(args.held_out_images),
           "--max-train-rows", str(args.batch * 4), "--device", args.device, "--memory-child", f"{name}={lam}"]
    clipsteer_settings = {"--max-grad-norm": args.max_grad_norm, "--dead-feature-window": args.dead_feature_window,
                          "--adam-beta2": args.adam_beta2, "--sparsity-warmup-steps": args.sparsity_warmup_steps,
                          "--gradient-rescale": args.gradient_rescale or None,
                          "--bias-lr-factor": None if args.bias_lr_factor == 1 else args.bias_lr_factor}
    cmd += [part for flag, value in clipsteer_settings.items() if value is not None for part in (flag, str(value))]
    cmd += ["--autocast-bf16"] if args.autocast_bf16 else []
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if done.returncode != 0:
        print(f"memory probe of {name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="clipsteer activation store folder")
    parser.add_argument("--arch", choices=["relu", "topk"], default="topk")
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder-scale", type=float, default=None,
                        help="TopK: clipsteer's initial W_enc = C·W_decᵀ instead of the recipe's fitted scale")
    parser.add_argument("--tokens", type=int, default=4096 * 30, help="training tokens per library")
    parser.add_argument("--evals", type=int, default=4, help="held-out evaluations, spaced geometrically")
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of the timings (warm-up)")
    parser.add_argument("--held-out-images", type=int, default=600)
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--libraries", nargs="+",
                        default=["clipsteer", "clipsteer-paper", "saelens", "overcomplete", "dictionary_learning",
                                 "saev", "sparsify"])
    parser.add_argument("--lambdas", nargs="*", default=[],
                        help="ReLU: LIBRARY=λ1,λ2 (each library's own units); default: each library's default λ")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="where every library trains: cpu or cuda")
    parser.add_argument("--max-grad-norm", type=float, default=None,
                        help="clipsteer's gradient-norm clip (default: the recipe's — relu 0.02, others 1.0 — or the paper's 1.0; 0: none)")
    parser.add_argument("--autocast-bf16", action="store_true",
                        help="clipsteer's matmuls under bf16 autocast (sparsify's forward always is, on a GPU)")
    parser.add_argument("--dead-feature-window", type=int, default=None,
                        help="clipsteer's dead-feature window in steps (AuxK / ghost grads; default: the recipe's)")
    parser.add_argument("--adam-beta2", type=float, default=None,
                        help="clipsteer's Adam second-moment decay (default: the recipe's, 0.999)")
    parser.add_argument("--gradient-rescale", type=float, default=0.0,
                        help="clipsteer's p: gradients below the clip scaled up by (clip / norm)^p (default 0: "
                             "clipped only; 1: every step at the clip's norm)")
    parser.add_argument("--bias-lr-factor", type=float, default=1.0,
                        help="clipsteer's b_enc and b_dec lr as a multiple of --lr (default 1)")
    parser.add_argument("--sparsity-warmup-steps", type=int, default=None,
                        help="clipsteer's λ warm-up in steps (default: the recipe's — 60, or 0 for clipsteer-paper)")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS per library (subprocesses)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train, held_out = load_rows(args.store, args.held_out_images, args.max_train_rows)
    train, held_out = train.to(args.device), held_out.to(args.device)
    d = train.shape[1]
    s = Setting(args.arch, d, d * args.expansion, args.k, args.lr, args.batch, args.seed,
                # the optional knobs by name: a field added to Setting cannot shift them
                encoder_scale=args.encoder_scale, device=args.device, max_grad_norm=args.max_grad_norm,
                autocast_bf16=args.autocast_bf16, dead_feature_window=args.dead_feature_window,
                adam_beta2=args.adam_beta2, gradient_rescale=args.gradient_rescale,
                sparsity_warmup_steps=args.sparsity_warmup_steps, bias_lr_factor=args.bias_lr_factor)
    sample = train[:16384]
    lambdas = parse_lambdas(args.lambdas)

    if args.memory_child:
        name, _, lam = args.memory_child.partition("=")
        on_gpu = torch.device(s.device).type == "cuda"
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(s.device)
        base = torch.cuda.memory_allocated(s.device) if on_gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        library = build(name, s, float(lam), sample)
        stream = TensorSource(train).batches(s.batch, s.seed)
        for _ in range(3):
            library.step(next(stream))
        peak = torch.cuda.max_memory_allocated(s.device) if on_gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print((peak - base) / 2**20)
        return {}

    skipped, tracks, lams = {}, [], []
    for name in args.libraries:
        reason = available(name, args.arch)
        if reason is not None:
            skipped[name] = reason
            print(f"skip {name}: {reason}", file=sys.stderr)
            continue
        for lam in (lambdas.get(name, [None]) if args.arch == "relu" else [None]):
            library = build(name, s, lam if lam is not None else default_lambda(name), sample)
            if lam is not None:
                library.name = f"{library.name} λ={lam:g}"
            tracks.append(Track(library))
            lams.append(lam)
    if not tracks or (len({t.library.name.split(" ")[0] for t in tracks}) > 1
                      and not tracks[0].library.name.startswith("clipsteer")):
        raise SystemExit("peers.py: the first library must be clipsteer (ratios are clipsteer/peer); "
                         "a single library may run alone (quality only, e.g. one process per library)")
    steps = math.ceil(args.tokens / s.batch)
    eval_at = {int(round(steps ** (i / max(1, args.evals - 1)))) for i in range(args.evals)} | {steps}
    machine_info = machine()
    print(f"{len(tracks)} SAEs, {steps} rounds of {s.batch} rows, d={d}, width={s.width}, {args.arch}; "
          f"{machine_info['load_average_start']}", file=sys.stderr)
    run_rounds(tracks, TensorSource(train), s, steps, held_out, eval_at)
    result = {
        "setting": vars(s) | {"tokens": steps * s.batch, "train_rows": len(train), "held_out_rows": len(held_out),
                              "store": args.store},
        "machine": machine_info | {"load_average_end": os.getloadavg()},
        "skipped": skipped,
        "throughput": throughput_rows(tracks, s.batch, min(args.skip, steps - 1)),
        "quality": [{"library": t.library.name, "driven": t.library.driven, "evals": t.evals} for t in tracks],
    }
    if args.arch == "relu":
        result["frontier_ev_at_l0"] = frontier(result["quality"])
    if args.memory:
        for track, lam in zip(tracks, lams, strict=True):
            name = track.library.name.split(" ")[0]
            result.setdefault("peak_rss_mib", {})[track.library.name] = memory_probe(
                args, name, lam if lam is not None else default_lambda(name))
    print(markdown(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # OUT + suffix, not with_suffix: names like "…_lw60_1.4e-4" hold dots
        atomic_write_json(out.parent / f"{out.name}.json", result)
        (out.parent / f"{out.name}.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    s, m = result["setting"], result["machine"]
    lines = [f"## {s['arch']} d={s['d']} width={s['width']} (×{s['width'] // s['d']}), batch {s['batch']}, "
             f"lr {s['lr']}, {s['tokens']:,} tokens"
             + (", clipsteer under bf16 autocast" if s.get("autocast_bf16") else "")
             + (f", clipsteer's gradient clip {s['max_grad_norm'] or 'off'}" if s.get("max_grad_norm") is not None else "")
             + (f", clipsteer's dead-feature window {s['dead_feature_window']} steps"
                if s.get("dead_feature_window") is not None else "")
             + (f", clipsteer's Adam β2 {s['adam_beta2']}" if s.get("adam_beta2") is not None else "")
             + (f", clipsteer's gradient rescale p = {s['gradient_rescale']}" if s.get("gradient_rescale") else "")
             + (f", clipsteer's bias lr × {s['bias_lr_factor']}" if s.get("bias_lr_factor", 1) != 1 else "")
             + (f", clipsteer's λ warm-up {s['sparsity_warmup_steps']} steps"
                if s.get("sparsity_warmup_steps") is not None else ""), "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs, torch threads {m['torch_threads']}"
             + (f", GPU {m['gpu']} (every library trains on it)" if s.get("device", "cpu") != "cpu" else "") + "; load average "
             f"{m['load_average_start'][0]:.1f} → {m['load_average_end'][0]:.1f}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v), "",
             "| library | driven through | tok/s | ratio clipsteer/peer (IQR) | EV | L0 | dead |",
             "|---|---|---:|---:|---:|---:|---:|"]
    quality = {q["library"]: q["evals"][-1] if q["evals"] else {} for q in result["quality"]}
    for row in result["throughput"]:
        q = quality.get(row["library"], {})
        ratio = (f"**{row['ratio']:.2f}** ({row['ratio_q1']:.2f}–{row['ratio_q3']:.2f})" if "ratio" in row else "—")
        lines.append(f"| {row['library']} | {row['driven']} | {row['tok_s']:,.0f} | {ratio} | {q.get('ev', float('nan')):.4f} "
                     f"| {q.get('l0', float('nan')):.1f} | {q.get('dead', float('nan')):.3f} |")
    lines += ["", "Held-out EV by tokens seen:", "", "| library | " + " | ".join(
        f"{e['tokens']:,}" for e in result["quality"][0]["evals"]) + " |",
              "|---|" + "---:|" * len(result["quality"][0]["evals"])]
    for q in result["quality"]:
        lines.append(f"| {q['library']} | " + " | ".join(f"{e['ev']:.3f} (L0 {e['l0']:.0f})" for e in q["evals"]) + " |")
    if result.get("frontier_ev_at_l0"):
        libs = list(next(iter(result["frontier_ev_at_l0"].values())))
        lines += ["", "ReLU frontier: held-out EV at every library's L0 values (linear in log L0 between each "
                  "library's λ points; — where a library's points do not span that L0):", "",
                  "| L0 | " + " | ".join(libs) + " |", "|---:|" + "---:|" * len(libs)]
        for l0, evs in sorted(result["frontier_ev_at_l0"].items(), key=lambda item: float(item[0])):
            lines.append(f"| {l0} | " + " | ".join("—" if evs[lib] is None else f"{evs[lib]:.4f}" for lib in libs) + " |")
    if result.get("peak_rss_mib"):
        what = "RSS" if s.get("device", "cpu") == "cpu" else "GPU memory"
        lines += ["", f"Peak {what} growth (MiB, separate process, 3 steps): " + ", ".join(
            f"{k} {v:.0f}" if v is not None else f"{k} failed" for k, v in result["peak_rss_mib"].items())]
    for name, reason in result["skipped"].items():
        lines.append(f"\nSkipped {name}: {reason}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
