"""`clipsteer debias`: suppress the SAE features that carry a spurious attribute; worst-group accuracy.

Task: zero-shot classification of the dataset's `label` from class prompts; groups are label ×
`spurious` (Waterbirds: bird × background; CelebA: hair × sex; the world: shape group × background
family or colour).

Selection statistic (on `select_split`), per feature with image score s = max code over the chosen
tokens:
- spurious strength = mean over classes y of |AUROC(s → spurious | label = y) − 0.5|: how well the
  feature tells the spurious values apart among images of the same class;
- target information = mean over spurious values a of |AUROC(s → label | spurious = a) − 0.5|: how
  much it says about the class once the spurious attribute is fixed.
Features with target information ≤ `selection.max_target_information` are ranked by spurious strength.
Stratifying each AUROC on the other label matters on skewed splits (Waterbirds train is 95 % aligned),
where an unstratified AUROC would credit class features with the background and vice versa.

The top k are suppressed (`selection.op`, delta form) on the chosen tokens; k and the tokens are chosen
on `choose_split` to maximise worst-group accuracy among candidates whose average accuracy drops at most
`max_avg_drop` below zero-shot (k = 0, i.e. zero-shot itself, is always a candidate); the choice is then
reported on `report_split`. Controls on the same splits: `random` (k random alive SAE features at the
SAE's chosen k and tokens, `random_draws` draws averaged), `neurons` (residual-stream neurons ranked by
the same statistic, mean-ablated since 0 is not a neuron's "off" state; their own k chosen the same way)
and `orth_proj` (no SAE: the spurious text direction, the difference of the spurious prompts' embeddings,
projected out of the image embedding, after Chuang et al. 2023). Several SAEs (one per layer) give a
per-layer sweep; the best layer is the one with the highest worst-group accuracy on `choose_split`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clipsteer.atomic import atomic_write_json
from clipsteer.data.labelled import open_labelled
from clipsteer.data.protocol import LABEL, SPURIOUS, NamedLabelledDataset, group_labels
from clipsteer.experiments.suppression import (
    Choice,
    FeatureSelection,
    PromptClassifier,
    Ranking,
    capture_sites,
    choose,
    embed,
    image_scores,
    mean_codes,
    prompts_of,
    random_features,
    rank_features,
    suppression_fn,
    token_masks,
    top_label_concepts,
    within_auroc,
)
from clipsteer.models.backbone import Backbone
from clipsteer.steer.dictionary import DirectionSet, LinearDictionary

Control = Literal["random", "neurons", "orth_proj"]
SPLIT_ROLES = ("select", "choose", "report")


@dataclass(frozen=True)
class DebiasConfig:
    saes: tuple[Path, ...]
    """SAE folders to compare (typically one per layer); each SAE's config names its hook site."""
    out: Path = Path("runs/debias")
    """Run directory: config.json, result.json, features_<n>_<site>.json, debias_layers.png."""
    model: str | None = None
    """CLIP checkpoint folder or hub id; default: the shipped toy CLIP."""
    dataset: str = "world:background"
    """A labelled dataset spec: world:background, world:attribute, waterbirds:ROOT, celeba:ROOT, csv:ROOT."""
    select_split: str = "train"
    """Features are ranked on this split."""
    choose_split: str = "val"
    """k, tokens and the best layer are chosen on this split."""
    report_split: str = "test"
    """The reported numbers come from this split."""
    max_images: int | None = 2000
    """Use at most the first this many images of each split (None: all)."""
    templates: tuple[str, ...] | None = None
    """Class prompt templates; default: the dataset's own (`templates` attribute) or 'a photo of a {}.'."""
    spurious_templates: tuple[str, ...] | None = None
    """Prompts for the spurious values (Orth-Proj); default: the dataset's or 'a photo of a {}.'."""
    selection: FeatureSelection = field(default_factory=FeatureSelection)
    max_avg_drop: float = 0.03
    """Choice rule: a candidate may lower the average accuracy on choose_split by at most this much."""
    controls: tuple[Control, ...] = ("random", "neurons", "orth_proj")
    random_draws: int = 3
    images_per_batch: int = 256
    device: str = "cpu"
    seed: int = 0


@dataclass(frozen=True)
class GroupMetrics:
    """Group accuracies of one prediction set (accuracies in [0, 1])."""

    wga: float
    avg: float
    """Accuracy over all images of the split."""
    avg_reweighted: float
    """Group accuracies weighted by the select split's group proportions."""
    groups: dict[str, float]

    @classmethod
    def of(cls, pred: np.ndarray, label: np.ndarray, group: np.ndarray, names: tuple[str, ...],
           weights: np.ndarray) -> GroupMetrics:
        correct = pred == label
        accs = {}
        for g, name in enumerate(names):
            if not (group == g).any():
                raise ValueError(f"group {name!r} has no images in this split; group metrics need every group")
            accs[name] = float(correct[group == g].mean())
        values = np.array(list(accs.values()))
        return cls(wga=float(values.min()), avg=float(correct.mean()),
                   avg_reweighted=float((values * weights).sum() / weights.sum()), groups=accs)


@dataclass(frozen=True)
class MethodResult:
    """One method's choice (k, tokens, features) and its metrics on the choose and report splits."""

    method: str
    k: int
    tokens: str
    features: tuple[int, ...]
    choose: GroupMetrics
    report: GroupMetrics
    report_draws: tuple[GroupMetrics, ...] = ()
    """For `random`: one report per draw (`report` holds their mean)."""


@dataclass(frozen=True)
class LayerResult:
    site: str
    sae: str
    methods: dict[str, MethodResult]
    curve: tuple[tuple[int, str, float, float], ...]
    """SAE candidates on the choose split: (k, tokens, wga, avg)."""


@dataclass(frozen=True)
class DebiasResult:
    dataset: str
    zero_shot: MethodResult
    orth_proj: MethodResult | None
    layers: tuple[LayerResult, ...]
    best_site: str
    """The layer whose SAE suppression has the highest worst-group accuracy on the choose split."""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, path: str | Path) -> DebiasResult:
        data = json.loads(Path(path).read_text())
        method = _method_from_json
        layers = tuple(LayerResult(site=lay["site"], sae=lay["sae"],
                                   methods={k: method(v) for k, v in lay["methods"].items()},
                                   curve=tuple(tuple(c) for c in lay["curve"]))  # type: ignore[misc]
                       for lay in data["layers"])
        return cls(dataset=data["dataset"], zero_shot=method(data["zero_shot"]),
                   orth_proj=method(data["orth_proj"]) if data["orth_proj"] else None,
                   layers=layers, best_site=data["best_site"])

    def layer(self, site: str) -> LayerResult:
        return next(lay for lay in self.layers if lay.site == site)


def _method_from_json(d: dict) -> MethodResult:
    return MethodResult(method=d["method"], k=d["k"], tokens=d["tokens"], features=tuple(d["features"]),
                        choose=GroupMetrics(**d["choose"]), report=GroupMetrics(**d["report"]),
                        report_draws=tuple(GroupMetrics(**g) for g in d["report_draws"]))


@dataclass
class SplitData:
    """One split's labels and, per site, its captured activations."""

    dataset: NamedLabelledDataset
    indices: np.ndarray
    label: np.ndarray
    spurious: np.ndarray
    group: np.ndarray
    hidden: dict[str, Tensor] = field(default_factory=dict)


class GroupTask:
    """The splits, classifier and group weights of one debias run; measures site functions."""

    def __init__(self, backbone: Backbone, config: DebiasConfig):
        self.backbone, self.config = backbone, config
        self.sites: list[str] = []  # captured together, in one forward per batch
        splits = dict(zip(SPLIT_ROLES, (config.select_split, config.choose_split, config.report_split), strict=True))
        self.splits = {role: self._split(open_labelled(config.dataset, name)) for role, name in splits.items()}
        reference = self.splits["select"].dataset
        self.group_names = group_labels(reference)[1]
        counts = np.bincount(self.splits["select"].group, minlength=len(self.group_names)).astype(float)
        self.weights = counts / counts.sum()
        templates = config.templates or getattr(reference, "templates", None) or ("a photo of a {}.",)
        self.classifier = PromptClassifier(backbone, prompts_of(reference), templates)
        spurious_templates = (config.spurious_templates or getattr(reference, "spurious_templates", None)
                              or ("a photo of a {}.",))
        self.spurious_text = backbone.zero_shot_head(reference.label_names()[SPURIOUS], spurious_templates).cpu()

    def _split(self, dataset: NamedLabelledDataset) -> SplitData:
        labels = dataset.labels()
        n = len(dataset) if self.config.max_images is None else min(len(dataset), self.config.max_images)
        group = group_labels(dataset)[0][:n]
        if (labels[LABEL][:n] < 0).any() or (labels[SPURIOUS][:n] < 0).any():
            raise ValueError(f"{dataset!r}: every image needs a label and a spurious value for debiasing")
        return SplitData(dataset, np.arange(n), labels[LABEL][:n], labels[SPURIOUS][:n], group)

    def hidden(self, role: str, site: str) -> Tensor:
        split = self.splits[role]
        if site not in split.hidden:
            sites = list(dict.fromkeys([*self.sites, site]))
            split.hidden = capture_sites(self.backbone, split.dataset, split.indices.tolist(), sites,
                                         self.config.images_per_batch, desc=f"{role} images")
        return split.hidden[site]

    def metrics(self, role: str, embeddings: Tensor) -> GroupMetrics:
        split = self.splits[role]
        return GroupMetrics.of(self.classifier.predict(embeddings), split.label, split.group, self.group_names,
                               self.weights)

    def measure(self, role: str, site: str, fn=None) -> GroupMetrics:
        return self.metrics(role, embed(self.backbone, site, self.hidden(role, site), fn,
                                        self.config.images_per_batch))


def rank_spurious(dictionary: LinearDictionary, hidden: Tensor, split: SplitData, tokens: str,
                  max_target_information: float) -> Ranking:
    """The debias statistic (module docstring) for every feature of `dictionary`."""
    scores = image_scores(dictionary, hidden, token_masks(tokens, hidden.shape[1]))  # type: ignore[arg-type]
    strength = within_auroc(scores, split.spurious, strata=split.label)
    target = within_auroc(scores, split.label, strata=split.spurious)
    return rank_features(strength, target, max_target_information)


def suppress_and_choose(task: GroupTask, site: str, dictionary: LinearDictionary, method: str,
                        op: str) -> tuple[MethodResult, list[Choice], dict[str, Ranking]]:
    """Rank on select, choose (k, tokens) on choose, report the choice; returns the candidates too."""
    config, sel = task.config, task.config.selection
    hidden = task.hidden("select", site)
    rankings = {tok: rank_spurious(dictionary, hidden, task.splits["select"], tok, sel.max_target_information)
                for tok in sel.tokens}
    means = {tok: mean_codes(dictionary, hidden, token_masks(tok, hidden.shape[1])) for tok in sel.tokens}

    def fn(k: int, tok: str):
        return suppression_fn(dictionary, rankings[tok].features[:k].tolist(), tok, op, means[tok],  # type: ignore[arg-type]
                              sel.form)

    base = task.measure("choose", site)
    candidates = [Choice(0, sel.tokens[0], {"wga": base.wga, "avg": base.avg})]
    for tok in sel.tokens:
        for k in sel.n_features:
            if k <= len(rankings[tok].features):
                m = task.measure("choose", site, fn(k, tok))
                candidates.append(Choice(k, tok, {"wga": m.wga, "avg": m.avg}))  # type: ignore[arg-type]
    chosen = choose(candidates, key=lambda c: c.metrics["wga"],
                    allowed=lambda c: c.metrics["avg"] >= base.avg - config.max_avg_drop)
    result = MethodResult(method, chosen.k, chosen.tokens,
                          tuple(rankings[chosen.tokens].features[:chosen.k].tolist()),
                          task.measure("choose", site, fn(chosen.k, chosen.tokens)),
                          task.measure("report", site, fn(chosen.k, chosen.tokens)))
    return result, candidates, rankings


def random_control(task: GroupTask, site: str, dictionary: LinearDictionary, sae_choice: MethodResult,
                   alive: Tensor) -> MethodResult:
    """k random alive features at the SAE's chosen k and tokens, averaged over draws."""
    config = task.config
    gen = torch.Generator().manual_seed(config.seed)
    draws, chooses, features = [], [], []
    op = task.config.selection.op  # the SAE's own op, so the control differs only in which features
    hidden = task.hidden("select", site)
    means = mean_codes(dictionary, hidden, token_masks(sae_choice.tokens, hidden.shape[1])) if sae_choice.k else None  # type: ignore[arg-type]
    for _ in range(config.random_draws):
        feats = random_features(alive, sae_choice.k, gen) if sae_choice.k else []
        fn = suppression_fn(dictionary, feats, sae_choice.tokens, op, means, task.config.selection.form)  # type: ignore[arg-type]
        chooses.append(task.measure("choose", site, fn))
        draws.append(task.measure("report", site, fn))
        features.extend(feats)
    return MethodResult("random", sae_choice.k, sae_choice.tokens, tuple(features), _mean(chooses), _mean(draws),
                        tuple(draws))


def _mean(reports: list[GroupMetrics]) -> GroupMetrics:
    return GroupMetrics(wga=float(np.mean([r.wga for r in reports])), avg=float(np.mean([r.avg for r in reports])),
                        avg_reweighted=float(np.mean([r.avg_reweighted for r in reports])),
                        groups={g: float(np.mean([r.groups[g] for r in reports])) for g in reports[0].groups})


def orth_proj(task: GroupTask, site: str) -> MethodResult:
    """Project the spurious text direction out of the (unedited) image embeddings."""
    text = task.spurious_text  # [A, E]
    directions = text[1:] - text[:1]  # [A-1, E]: differences span the spurious subspace
    basis = torch.linalg.qr(directions.T.double()).Q.float()  # [E, A-1], orthonormal

    def project(role: str) -> GroupMetrics:
        emb = embed(task.backbone, site, task.hidden(role, site), None, task.config.images_per_batch)
        return task.metrics(role, F.normalize(emb - (emb @ basis) @ basis.T, dim=-1))

    return MethodResult("orth_proj", 0, "none", (), project("choose"), project("report"))


def load_dictionary(path: Path, device: str) -> tuple[str, LinearDictionary]:
    """(hook site, dictionary) of an SAE folder; the SAE's config must name its site."""
    from clipsteer.sae.loading import load_any_sae
    from clipsteer.steer.sae_adapter import SAEDictionary

    sae = load_any_sae(path, device=device)
    if sae.config.site is None:
        raise ValueError(f"{path}: the SAE's config records no hook site; suppression needs it")
    return sae.config.site, SAEDictionary(sae)


def debias_layer(task: GroupTask, sae_path: Path, site: str, dictionary: LinearDictionary) -> tuple[LayerResult, dict]:
    """All methods at one SAE's site; also returns the selected features' details for the run folder."""
    config = task.config
    sae_result, candidates, rankings = suppress_and_choose(task, site, dictionary, "sae", config.selection.op)
    methods = {"sae": sae_result}
    if "random" in config.controls:
        hidden = task.hidden("select", site)
        alive = image_scores(dictionary, hidden, token_masks("all", hidden.shape[1])).amax(dim=0) > 0
        methods["random"] = random_control(task, site, dictionary, sae_result, alive)
    if "neurons" in config.controls:
        neurons = DirectionSet.neurons(task.backbone.d_model)
        methods["neurons"] = suppress_and_choose(task, site, neurons, "neurons", "mean_ablate")[0]
    ranking = rankings[sae_result.tokens] if sae_result.k else rankings[config.selection.tokens[0]]
    details = feature_details(task, site, dictionary, ranking, sae_result)
    curve = tuple((c.k, c.tokens, c.metrics["wga"], c.metrics["avg"]) for c in candidates)
    return LayerResult(site, str(sae_path), methods, curve), details  # type: ignore[arg-type]


def feature_details(task: GroupTask, site: str, dictionary: LinearDictionary, ranking: Ranking,
                    chosen: MethodResult, n_listed: int = 64, n_images: int = 8) -> dict:
    """The top-ranked features: statistic, target information and top-activating select-split images."""
    hidden = task.hidden("select", site)
    listed = ranking.features[:n_listed]
    tokens = chosen.tokens if chosen.k else task.config.selection.tokens[0]
    scores = image_scores(dictionary, hidden, token_masks(tokens, hidden.shape[1]))[:, listed]  # type: ignore[arg-type]
    split = task.splits["select"]
    top = scores.topk(min(n_images, len(scores)), dim=0).indices.T  # [n_listed, n_images]
    return {"site": site, "tokens": tokens, "suppressed": list(chosen.features),
            "statistic": "mean over classes of |AUROC(spurious | class) - 0.5|",
            "features": [{"feature": int(j), "spurious_strength": float(ranking.statistic[j]),
                          "target_information": float(ranking.target_information[j]),
                          "suppressed": int(j) in chosen.features,
                          "top_images": [int(split.indices[i]) for i in top[r]],
                          "top_concepts": top_label_concepts(split.dataset, [int(split.indices[i]) for i in top[r]]),
                          "top_image_names": [_name(split.dataset, int(split.indices[i])) for i in top[r][:3]]}
                         for r, j in enumerate(listed.tolist())]}


def _name(dataset, i: int) -> str:
    fn = getattr(dataset, "name", None)
    return str(fn(i)) if callable(fn) else f"#{i}"


def run_debias(backbone: Backbone, config: DebiasConfig) -> DebiasResult:
    """The library function under `debias`: every SAE in `config.saes`, plus zero-shot and Orth-Proj."""
    if not config.saes:
        raise ValueError("debias needs at least one SAE (--saes DIR [DIR ...])")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    task = GroupTask(backbone, config)
    dictionaries = [load_dictionary(Path(path), config.device) for path in config.saes]
    task.sites = list(dict.fromkeys(site for site, _ in dictionaries))
    layers = []
    for n, (path, (site, dictionary)) in enumerate(zip(config.saes, dictionaries, strict=True)):
        layer, detail = debias_layer(task, Path(path), site, dictionary)
        layers.append(layer)
        atomic_write_json(out / f"features_{n}_{layer.site}.json", detail)
        print(_layer_line(layer))
    first_site = layers[-1].site  # zero-shot does not depend on the site; this one is cached
    base = MethodResult("zero_shot", 0, "none", (), task.measure("choose", first_site),
                        task.measure("report", first_site))
    proj = orth_proj(task, first_site) if "orth_proj" in config.controls else None
    best = max(layers, key=lambda lay: lay.methods["sae"].choose.wga)
    result = DebiasResult(config.dataset, base, proj, tuple(layers), best.site)
    atomic_write_json(out / "result.json", result.to_json())
    plot_layers(result, out / "debias_layers.png")
    print(summary(result))
    return result


def _layer_line(layer: LayerResult) -> str:
    parts = [f"{name} k={m.k} {m.tokens}: wga {m.report.wga:.3f} avg {m.report.avg:.3f}"
             for name, m in layer.methods.items()]
    return f"[debias] {layer.site}: " + "; ".join(parts)


def summary(result: DebiasResult) -> str:
    z = result.zero_shot.report
    lines = [f"debias on {result.dataset} (report split): zero-shot wga {z.wga:.3f} avg {z.avg:.3f}"]
    if result.orth_proj is not None:
        lines.append(f"  orth_proj: wga {result.orth_proj.report.wga:.3f} avg {result.orth_proj.report.avg:.3f}")
    lines += ["  " + _layer_line(lay) for lay in result.layers]
    lines.append(f"  best layer (choose split): {result.best_site}")
    return "\n".join(lines)


def plot_layers(result: DebiasResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = [lay.site for lay in result.layers]
    x = np.arange(len(sites))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("sae", "neurons", "random"):
        if all(name in lay.methods for lay in result.layers):
            ax.plot(x, [lay.methods[name].report.wga for lay in result.layers], marker="o", label=f"{name} WGA")
    ax.axhline(result.zero_shot.report.wga, color="grey", ls="--", label="zero-shot WGA")
    ax.axhline(result.zero_shot.report.avg, color="grey", ls=":", label="zero-shot avg")
    if result.orth_proj is not None:
        ax.axhline(result.orth_proj.report.wga, color="black", ls="-.", label="Orth-Proj WGA")
    ax.set_xticks(x, sites, rotation=20, fontsize=7)
    ax.set_ylabel("accuracy (report split)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def debias(config: DebiasConfig) -> DebiasResult:
    """`clipsteer debias`: write config.json and run (see the module docstring)."""
    from clipsteer.world.paths import shipped_toy_clip

    torch.manual_seed(config.seed)
    backbone = Backbone.from_pretrained(config.model or shipped_toy_clip(), device=config.device)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(config.out) / "config.json", json.loads(json.dumps(dataclasses.asdict(config), default=str)))
    return run_debias(backbone, config)
