"""The skeleton shared by `debias` and `typographic-defense`: select features → suppress → measure.

1. **Capture** a split's activations at the site once (`capture_site`, [N, T, d]).
2. **Select**: image-level feature scores (`image_scores`: max over the chosen tokens, or over a
   per-image token mask) feed a statistic (AUROC from `evaluate.auroc`); `rank_features` keeps the
   features that pass a target-information filter and orders them by the statistic.
3. **Suppress** the top k with `suppression_fn` — one `steer.interventions.Edit` (ablate or
   mean-ablate) through `edit_fn`, delta form by default — and **measure** by resuming the forward
   from the site (`embed`), which equals running `with suppressed(...): backbone.encode_image(...)`
   (tested) but reuses the captured prefix for every candidate k.
4. **Choose** k and tokens on a validation split (`choose`: the best score whose guard metric drops at
   most a bound), report on the test split.

Controls use the same functions with another dictionary (`DirectionSet.neurons`) or random features.
Each experiment (`debias`, `typographic-defense`) supplies a `SuppressionTask` — its statistic, its
metrics, the score it chooses on and its guard — and the engine below (`suppress_and_choose`,
`random_control`, `suppression_layer`, `run_experiment`) does the rest, writing one typed
`SuppressionResult`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from clipsteer.atomic import atomic_write_json
from clipsteer.data.protocol import LABEL, ImageDataset, NamedLabelledDataset
from clipsteer.evaluate.auroc import auroc
from clipsteer.evaluate.groups import GroupReport, TypographicReport
from clipsteer.experiments.configs import FeatureSelection, SuppressionConfig, SuppressOp
from clipsteer.models.backbone import Backbone, SiteFn, TokenSelection
from clipsteer.models.sites import token_slice
from clipsteer.results import ResultFile
from clipsteer.steer.dictionary import DirectionSet, LinearDictionary
from clipsteer.steer.interventions import Edit, Form, edit_fn

C = TypeVar("C", bound=SuppressionConfig)



@dataclass(frozen=True)
class Ranking:
    """Features ordered best first, with the statistic that ordered them and the filter's value."""

    features: Tensor  # int64 [n] (only those that pass the filter and score above chance)
    statistic: Tensor  # float [F], for every feature
    target_information: Tensor  # float [F]


@dataclass(frozen=True)
class Candidate:
    """A candidate (k, tokens) and its metrics on the choose split: the score chosen on and the guard."""

    k: int
    tokens: str
    score: float
    guard: float
    guard_se: float = 0.0
    """Standard error of the guard's drop from the unedited model, paired over the choose split's images."""


def load_pixels(backbone: Backbone, dataset: ImageDataset, indices: Sequence[int]) -> Tensor:
    """Images at `indices` preprocessed by the model: [N, 3, S, S]."""
    return backbone.pixels([dataset.load(int(i)) for i in indices])


@torch.no_grad()
def capture_sites(backbone: Backbone, dataset: ImageDataset, indices: Sequence[int], sites: Sequence[str],
                  images_per_batch: int = 256, desc: str = "capture") -> dict[str, Tensor]:
    """Activations at each site (one forward per batch) of the images at `indices`:
    {site: [N, T, d]} (float32, on the CPU, keyed by the names given)."""
    chunks: dict[str, list[Tensor]] = {site: [] for site in sites}
    for start in tqdm(range(0, len(indices), images_per_batch), desc=desc, leave=False):
        pixels = load_pixels(backbone, dataset, indices[start:start + images_per_batch])
        captured = backbone.capture(pixels, list(sites))
        for site in sites:
            chunks[site].append(captured[backbone.site(site).name].float().cpu())
    return {site: torch.cat(parts) for site, parts in chunks.items()}


@torch.no_grad()
def embed(backbone: Backbone, site: str, hidden: Tensor, fn: SiteFn | None = None,
          images_per_batch: int = 256) -> Tensor:
    """Image embeddings [N, E] resumed from `site` with hidden [N, T, d] edited by `fn` (None: unedited)."""
    out = []
    for start in range(0, len(hidden), images_per_batch):
        h = hidden[start:start + images_per_batch].to(backbone.device, backbone.dtype)
        out.append(backbone.encode_from(site, fn(h) if fn is not None else h).float().cpu())
    return torch.cat(out)


def token_masks(tokens: TokenSelection, n_tokens: int) -> Tensor:
    """bool [T] for a named token selection (CLS is index 0)."""
    mask = torch.zeros(n_tokens, dtype=torch.bool)
    mask[token_slice(tokens)] = True
    return mask


@torch.no_grad()
def image_scores(dictionary: LinearDictionary, hidden: Tensor, masks: Tensor,
                 tokens_per_batch: int = 16384) -> Tensor:
    """Per image, each feature's max code over the tokens in `masks`: hidden [N, T, d], masks bool [T]
    or [N, T] → [N, F]. Images whose mask is empty score −inf (callers drop them)."""
    n, t, _ = hidden.shape
    masks = masks.expand(n, t) if masks.ndim == 1 else masks
    assert masks.shape == (n, t), f"masks {tuple(masks.shape)} for hidden {tuple(hidden.shape)}"
    step = max(1, tokens_per_batch // t)
    out = []
    for start in range(0, n, step):
        codes = dictionary.codes(hidden[start:start + step]).float()  # [b, T, F]
        m = masks[start:start + step, :, None]
        out.append(codes.masked_fill(~m, float("-inf")).amax(dim=1))
    return torch.cat(out)


@torch.no_grad()
def mean_codes(dictionary: LinearDictionary, hidden: Tensor, mask: Tensor,
               tokens_per_batch: int = 16384) -> Tensor:
    """Mean code of each feature over the selected tokens (mask bool [T]) of hidden [N, T, d] → [F]."""
    step = max(1, tokens_per_batch // hidden.shape[1])
    total, count = None, 0
    for start in range(0, len(hidden), step):
        codes = dictionary.codes(hidden[start:start + step][:, mask]).float()
        part = codes.sum(dim=(0, 1))
        total = part if total is None else total + part
        count += codes.shape[0] * codes.shape[1]
    assert total is not None and count > 0
    return total / count


def within_auroc(scores: Tensor, positive: np.ndarray, strata: np.ndarray) -> Tensor:
    """Mean over strata s of |AUROC(scores | stratum s, positive) − 0.5|: [N, F] → [F].

    Stratifying on the other label removes what the two labels share, so a feature is credited only
    for what it says about `positive` among images with the same value of the other label."""
    values = []
    for s in np.unique(strata):
        keep = torch.from_numpy(strata == s)
        target = torch.from_numpy(positive[strata == s].astype(bool))
        if target.all() or not target.any():
            raise ValueError(f"stratum {s} has only one value of the attribute; the selection split needs both "
                             f"values within every class")
        values.append((auroc(scores[keep], target) - 0.5).abs())
    return torch.stack(values).mean(dim=0)


def rank_features(statistic: Tensor, target_information: Tensor, max_target_information: float,
                  chance: float = 0.0) -> Ranking:
    """Features with target_information ≤ the bound and statistic > chance, best first."""
    ok = (target_information <= max_target_information) & (statistic > chance)
    order = torch.argsort(statistic, descending=True, stable=True)
    return Ranking(order[ok[order]], statistic, target_information)


def suppression_fn(dictionary: LinearDictionary, features: Sequence[int], tokens: TokenSelection | Tensor,
                   op: SuppressOp = "ablate", means: Tensor | None = None, form: Form = "delta") -> SiteFn:
    """A site function suppressing `features` on `tokens`; the identity for an empty feature list."""
    if len(features) == 0:
        return lambda h: h
    return edit_fn(dictionary, [Edit(tuple(int(j) for j in features), op=op, tokens=tokens,
                                     means=means if op == "mean_ablate" else None)], form)


@contextmanager
def suppressed(backbone: Backbone, dictionary: LinearDictionary, site: str, features: Sequence[int],
               tokens: TokenSelection | Tensor, op: SuppressOp = "ablate", means: Tensor | None = None,
               form: Form = "delta") -> Iterator[None]:
    """Within the block, every forward of `backbone` runs with `features` suppressed at `site`."""
    with backbone.intervene(site, suppression_fn(dictionary, features, tokens, op, means, form)):
        yield


def prompts_of(dataset: NamedLabelledDataset) -> tuple[tuple[str, ...], ...]:
    """Per label value, the names to prompt: `dataset.label_prompts()` if it has them, else its name."""
    fn = getattr(dataset, "label_prompts", None)
    return tuple(fn()) if callable(fn) else tuple((n,) for n in dataset.label_names()[LABEL])


def patch_token_masks(masks: Sequence[np.ndarray], grid: int) -> Tensor:
    """Pixel masks bool [H, W] (square, as rendered at the model's size) → token masks bool [N, 1 + grid²]
    marking the patches that hold any masked pixel (CLS never marked)."""
    out = torch.zeros(len(masks), 1 + grid * grid, dtype=torch.bool)
    for i, mask in enumerate(masks):
        h, w = mask.shape
        if h != w:
            raise ValueError(f"text mask {i} is {h}×{w}; expected a square mask at the model's input size")
        if h % grid:  # not a whole number of pixels per patch: resample to the nearest multiple first
            side = grid * -(-h // grid)
            mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST))
            h = side
        pooled = mask.reshape(grid, h // grid, grid, h // grid).any(axis=(1, 3))
        out[i, 1:] = torch.from_numpy(pooled.reshape(-1))
    return out


def choose(candidates: Sequence[Candidate], max_guard_drop: float, standard_errors: float = 0.0) -> Candidate:
    """The candidate with the highest score among those whose guard drop below the first candidate's
    (k = 0, the unedited model), plus `standard_errors` of its standard error, is at most `max_guard_drop`;
    ties go to the first listed, i.e. the smallest k."""
    base = candidates[0]
    best = base
    for c in candidates[1:]:
        within = base.guard - c.guard + standard_errors * c.guard_se <= max_guard_drop + 1e-9  # float slack
        if within and c.score > best.score:
            best = c
    return best


def paired_standard_error(right: np.ndarray, base_right: np.ndarray) -> float:
    """Standard error of mean(base_right) − mean(right), paired per image (bool [N] each)."""
    assert right.shape == base_right.shape and right.ndim == 1, (right.shape, base_right.shape)
    if len(right) < 2:
        return 0.0
    diff = right.astype(np.float64) - base_right.astype(np.float64)
    return float(np.sqrt(diff.var(ddof=1) / len(diff)))


def top_label_concepts(dataset: NamedLabelledDataset, images: Sequence[int]) -> dict[str, tuple[str, float]]:
    """Per label column, the most common value among `images` (e.g. a feature's top-activating images)
    and the fraction of them that have it: what the feature's strongest images share."""
    out = {}
    names = dataset.label_names()
    for column, values in dataset.labels().items():
        picked = values[np.asarray(images, dtype=np.int64)]
        picked = picked[picked >= 0]
        if len(picked):
            top = int(np.bincount(picked).argmax())
            out[column] = (names[column][top], float((picked == top).mean()))
    return out


def random_features(alive: Tensor, k: int, generator: torch.Generator) -> list[int]:
    """k features drawn without replacement from the alive ones (bool [F])."""
    pool = torch.nonzero(alive).flatten()
    if k > len(pool):
        raise ValueError(f"cannot draw {k} random features from {len(pool)} alive ones")
    return pool[torch.randperm(len(pool), generator=generator)[:k]].tolist()


# ----------------------------------------------------------------- results shared by both experiments
Metrics = GroupReport | TypographicReport
"""What one prediction set scores: group accuracies (debias) or accuracy under attack (typographic)."""


def mean_metrics(reports: Sequence[Metrics]) -> Metrics:
    """The mean of several reports of one kind (e.g. random-feature draws)."""
    kinds = {type(r) for r in reports}
    assert len(reports) > 0 and len(kinds) == 1, kinds
    return reports[0].mean_of(reports)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MethodResult:
    """One method's choice (k, tokens, features) and its metrics on the choose and report splits."""

    method: str
    k: int
    tokens: str
    features: tuple[int, ...]
    choose: Metrics
    report: Metrics
    report_draws: tuple[Metrics, ...] = ()
    """For `random`: one report per draw (`report` holds their mean)."""


@dataclass(frozen=True)
class LayerResult:
    """Every method at one SAE's site, and the SAE's candidates on the choose split."""

    site: str
    sae: str
    methods: dict[str, MethodResult]
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class SuppressionResult(ResultFile):
    """`result.json` of `debias` and `typographic-defense` (typed; `SuppressionResult.read(folder)`)."""

    FILE: ClassVar[str] = "result.json"
    experiment: Literal["debias", "typographic"]
    dataset: str
    score: str
    """The metric k and tokens were chosen to maximise (`wga`, `attacked_accuracy`)."""
    guard: str
    """The metric a choice may lower by at most the configured drop (`accuracy`, `clean_accuracy`)."""
    baseline: MethodResult
    """The unedited model (zero-shot / no defense)."""
    references: dict[str, MethodResult]
    """Methods without an SAE, measured once (e.g. Orth-Proj)."""
    layers: tuple[LayerResult, ...]
    best_site: str
    """The layer whose SAE suppression scores highest on the choose split."""
    group_weights: dict[str, float] = field(default_factory=dict)
    """Group proportions of the selection split (debias: re-weights the average accuracy)."""

    def layer(self, site: str) -> LayerResult:
        for layer in self.layers:
            if layer.site == site:
                return layer
        raise KeyError(f"no layer {site!r} in this result (layers: {[lay.site for lay in self.layers]})")

    @property
    def best(self) -> LayerResult:
        return self.layer(self.best_site)

    def values(self, metrics: Metrics) -> dict[str, float]:
        """The headline numbers of one report, by name (NaN-free: unmeasured ones are left out)."""
        if isinstance(metrics, GroupReport):
            out = {"wga": metrics.wga, "avg": metrics.avg, "accuracy": metrics.accuracy}
            if self.group_weights:
                out["avg_reweighted"] = metrics.weighted_avg(self.group_weights)
            return out
        return {k: v for k, v in dataclasses.asdict(metrics).items() if v is not None}


# ----------------------------------------------------------------- the engine shared by both experiments
class SuppressionTask(Protocol):
    """What an experiment supplies to the shared select → suppress → choose → control engine."""

    backbone: Backbone
    sites: list[str]
    selection: FeatureSelection
    score: str
    guard: str
    max_guard_drop: float
    guard_standard_errors: float
    random_draws: int
    seed: int

    def rank(self, dictionary: LinearDictionary, site: str, tokens: TokenSelection) -> Ranking:
        """The experiment's selection statistic for every feature, ranked."""
        ...

    def reference_hidden(self, site: str) -> Tensor:
        """Selection-split activations [N, T, d] whose mean codes mean-ablation uses (unedited images)."""
        ...

    def measure(self, role: str, site: str, fn: SiteFn | None = None) -> Metrics:
        """Metrics of the `role` split with `fn` applied at `site`."""
        ...

    def choice_outcomes(self, site: str, fn: SiteFn | None = None) -> tuple[float, np.ndarray]:
        """On the choose split with `fn` at `site`: the score chosen on, and per image whether it is right
        in the guard metric (bool [N]; their mean is the guard)."""
        ...


class TaskBase:
    """What every `SuppressionTask` shares: the config's choice settings, the split names by role, the
    sites captured together, and the prompt templates."""

    def __init__(self, backbone: Backbone, config: SuppressionConfig, max_guard_drop: float):
        self.backbone, self.config = backbone, config
        self.selection, self.max_guard_drop = config.selection, max_guard_drop
        self.random_draws, self.seed = config.random_draws, config.seed
        self.guard_standard_errors = config.guard_standard_errors
        self.sites: list[str] = []  # captured together, in one forward per batch
        self.split_names = {"select": config.select_split, "choose": config.choose_split,
                            "report": config.report_split}

    def templates(self, dataset: object) -> tuple[str, ...]:
        """The config's templates, else the dataset's own (`templates`), else CLIP's 'a photo of a {}.'."""
        return tuple(self.config.templates or getattr(dataset, "templates", None) or ("a photo of a {}.",))


def metric(metrics: Metrics, name: str) -> float:
    return float(getattr(metrics, name))


def suppress_and_choose(task: SuppressionTask, site: str, dictionary: LinearDictionary, method: str,
                        op: SuppressOp) -> tuple[MethodResult, tuple[Candidate, ...], dict[str, Ranking]]:
    """Rank on select, choose (k, tokens) on choose, report the choice; returns the candidates too."""
    sel = task.selection
    rankings = {tok: task.rank(dictionary, site, tok) for tok in sel.tokens}
    reference = task.reference_hidden(site)
    means = {tok: mean_codes(dictionary, reference, token_masks(tok, reference.shape[1])) for tok in sel.tokens}

    def fn(k: int, tok: TokenSelection) -> SiteFn:
        return suppression_fn(dictionary, rankings[tok].features[:k].tolist(), tok, op, means[tok], sel.form)

    base_score, base_right = task.choice_outcomes(site)

    def candidate(k: int, tok: TokenSelection) -> Candidate:
        score, right = task.choice_outcomes(site, fn(k, tok))
        return Candidate(k, tok, score, float(right.mean()), paired_standard_error(right, base_right))

    candidates = [Candidate(0, sel.tokens[0], base_score, float(base_right.mean()))]
    candidates += [candidate(k, tok) for tok in sel.tokens for k in sel.n_features
                   if k <= len(rankings[tok].features)]
    chosen = choose(candidates, task.max_guard_drop, task.guard_standard_errors)
    tokens: TokenSelection = chosen.tokens  # type: ignore[assignment]
    result = MethodResult(method, chosen.k, chosen.tokens, tuple(rankings[tokens].features[:chosen.k].tolist()),
                          task.measure("choose", site, fn(chosen.k, tokens)),
                          task.measure("report", site, fn(chosen.k, tokens)))
    return result, tuple(candidates), rankings


def random_control(task: SuppressionTask, site: str, dictionary: LinearDictionary,
                   sae_choice: MethodResult) -> MethodResult:
    """k random alive features at the SAE's chosen k and tokens and with its op, averaged over draws: the
    control differs from the SAE's choice only in which features are suppressed."""
    gen = torch.Generator().manual_seed(task.seed)
    reference = task.reference_hidden(site)
    alive = image_scores(dictionary, reference, token_masks("all", reference.shape[1])).amax(dim=0) > 0
    tokens: TokenSelection = sae_choice.tokens if sae_choice.k else "all"  # type: ignore[assignment]
    means = mean_codes(dictionary, reference, token_masks(tokens, reference.shape[1]))
    chooses, draws, features = [], [], []
    for _ in range(task.random_draws):
        feats = random_features(alive, sae_choice.k, gen) if sae_choice.k else []
        fn = suppression_fn(dictionary, feats, tokens, task.selection.op, means, task.selection.form)
        chooses.append(task.measure("choose", site, fn))
        draws.append(task.measure("report", site, fn))
        features.extend(feats)
    return MethodResult("random", sae_choice.k, sae_choice.tokens, tuple(features), mean_metrics(chooses),
                        mean_metrics(draws), tuple(draws))


def suppression_layer(task: SuppressionTask, site: str, sae_path: Path, dictionary: LinearDictionary,
                      controls: Sequence[str]) -> tuple[LayerResult, Ranking]:
    """The SAE's choice and the controls at one site; also the ranking behind the SAE's choice."""
    sae_result, candidates, rankings = suppress_and_choose(task, site, dictionary, "sae", task.selection.op)
    methods = {"sae": sae_result}
    if "random" in controls:
        methods["random"] = random_control(task, site, dictionary, sae_result)
    if "neurons" in controls:  # 0 is not a neuron's "off" state: mean-ablate, with their own k
        neurons = DirectionSet.neurons(task.backbone.d_model)
        methods["neurons"] = suppress_and_choose(task, site, neurons, "neurons", "mean_ablate")[0]
    tokens = sae_result.tokens if sae_result.k else task.selection.tokens[0]
    return LayerResult(site, str(sae_path), methods, candidates), rankings[tokens]  # type: ignore[index]


def suppression_layers(task: SuppressionTask, saes: Sequence[Path], device: str, controls: Sequence[str], out: Path,
                       details: Callable[[LinearDictionary, str, Ranking, MethodResult], dict]
                       ) -> tuple[tuple[LayerResult, ...], str]:
    """Every SAE's layer (`suppression_layer`), each layer's feature details written to
    `out/features_<n>_<site>.json`; returns the layers and the best one's site (highest score on choose)."""
    if not saes:
        raise ValueError("at least one SAE is needed (--saes DIR [DIR ...])")
    dictionaries = [load_dictionary(Path(path), device) for path in saes]
    task.sites = list(dict.fromkeys(site for site, _ in dictionaries))  # captured together, one forward per batch
    layers = []
    for n, (path, (site, dictionary)) in enumerate(zip(saes, dictionaries, strict=True)):
        layer, ranking = suppression_layer(task, site, Path(path), dictionary, controls)
        layers.append(layer)
        atomic_write_json(out / f"features_{n}_{site}.json", details(dictionary, site, ranking, layer.methods["sae"]))
    best = max(layers, key=lambda lay: metric(lay.methods["sae"].choose, task.score))
    return tuple(layers), best.site


def load_dictionary(path: Path, device: str) -> tuple[str, LinearDictionary]:
    """(hook site, dictionary) of an SAE folder; the SAE's config must name its site."""
    from clipsteer.sae.loading import load_any_sae
    from clipsteer.steer.sae_adapter import SAEDictionary

    sae = load_any_sae(path, device=device)
    if sae.config.site is None:
        raise ValueError(f"{path}: the SAE's config records no hook site; suppression needs it")
    return sae.config.site, SAEDictionary(sae)


def method_line(result: SuppressionResult, name: str, method: MethodResult) -> str:
    values = result.values(method.report)
    return f"{name} k={method.k} {method.tokens}: " + " ".join(f"{k} {v:.3f}" for k, v in values.items())


def summary(result: SuppressionResult) -> str:
    """The console summary: baseline, references and every layer's methods on the report split."""
    lines = [f"{result.experiment} on {result.dataset} (report split), chosen by {result.score}: "
             + method_line(result, result.baseline.method, result.baseline)]
    lines += ["  " + method_line(result, name, m) for name, m in result.references.items()]
    for layer in result.layers:
        lines += [f"  {layer.site}: " + method_line(result, name, m) for name, m in layer.methods.items()]
    lines.append(f"  best layer (choose split): {result.best_site}")
    return "\n".join(lines)


def plot_layers(result: SuppressionResult, path: Path) -> None:
    """The score of every method per layer on the report split, against the baseline and references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(result.layers))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("sae", "neurons", "random"):
        if all(name in lay.methods for lay in result.layers):
            ax.plot(x, [metric(lay.methods[name].report, result.score) for lay in result.layers], marker="o",
                    label=f"{name} {result.score}")
    ax.axhline(metric(result.baseline.report, result.score), color="grey", ls="--",
               label=f"{result.baseline.method} {result.score}")
    ax.axhline(metric(result.baseline.report, result.guard), color="grey", ls=":",
               label=f"{result.baseline.method} {result.guard}")
    for name, ref in result.references.items():
        ax.axhline(metric(ref.report, result.score), color="black", ls="-.", label=f"{name} {result.score}")
    ax.set_xticks(x, [lay.site for lay in result.layers], rotation=20, fontsize=7)
    ax.set_ylabel("accuracy (report split)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_experiment(command: str, config: C, run: Callable[[Backbone, C, Path], SuppressionResult],
                   plot_name: str) -> SuppressionResult:
    """A suppression command under the run-folder protocol: lock `config.out`, record the config, run,
    plot, and write `result.json` last (atomically). A folder that already holds the complete result of
    the same config is reused."""
    from clipsteer.models.names import resolve_model
    from clipsteer.results import to_json
    from clipsteer.run_folder import RunFolder, folder_lock

    out = Path(config.out)
    model = resolve_model(config.model)
    with folder_lock(out, command):
        folder = RunFolder(out, command, to_json(config), SuppressionResult.FILE)
        if folder.is_complete() and SuppressionResult.done(out):
            print(f"[{command}] {out} already holds this run's result; reusing it")
            result = SuppressionResult.read(out)
            print(summary(result))
            return result
        folder.begin()
        torch.manual_seed(config.seed)
        result = run(Backbone.from_pretrained(model, device=config.device), config, out)
        plot_layers(result, out / plot_name)
        folder.wrote(*sorted(out.glob("features_*.json")), out / plot_name)
        result.write(out)
        folder.finish()
    print(summary(result))
    return result
