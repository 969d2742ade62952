"""`clipsteer typographic-defense`: suppress text-reading SAE features; accuracy under typographic attack.

Data: paired variants of each image — `clean`, `attacked` (a wrong class word written on it) and
`blank` (the same note with no word: the occlusion ceiling). `world:typographic` has them natively;
any other labelled dataset gets attacks rendered by `clipsteer.data.typographic.RenderedAttacks`.
Candidates are the union of true labels and attack words (here: the class names), one prompt
template per class (Defense-Prefix: "a photo of a {}.").

Selection statistic (on `select_split`), per feature: its image score is the max code over the
patches that hold the written word (the attacked image's text mask; without a mask, over the
suppression tokens), read at the same tokens of the attacked and of the clean image (or of the blank
note, with `reference="blank"`);
statistic = AUROC(score → attacked) − 0.5 over the 2N images, i.e. how reliably the feature fires more
where text is written than at the same place without it. Target information = max over classes c of
|AUROC(clean-image score over all tokens → class = c) − 0.5|; features above
`selection.max_target_information` are dropped (they also describe the object).

Suppression, choice and controls follow `debias`: k and tokens maximise object accuracy under attack
(OCA) on `choose_split` among candidates whose clean accuracy drops at most `max_clean_drop`; metrics on
`report_split`: OCA, text-capture rate (TCR: prediction = the written word), clean accuracy, blank-note
accuracy. Controls: `random` (k random alive features at the SAE's choice) and `neurons` (same statistic,
mean-ablated, own k).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from clipsteer.atomic import atomic_write_json
from clipsteer.data.labelled import open_labelled
from clipsteer.data.protocol import LABEL, TEXT, NamedLabelledDataset, text_mask
from clipsteer.data.typographic import VARIANTS, RenderedAttacks
from clipsteer.evaluate.auroc import auroc
from clipsteer.experiments.debias import load_dictionary
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
    patch_token_masks,
    prompts_of,
    random_features,
    rank_features,
    suppression_fn,
    token_masks,
    top_label_concepts,
)
from clipsteer.models.backbone import Backbone
from clipsteer.steer.dictionary import DirectionSet, LinearDictionary

Control = Literal["random", "neurons"]
SPLIT_ROLES = ("select", "choose", "report")


@dataclass(frozen=True)
class TypographicDefenseConfig:
    saes: tuple[Path, ...]
    """SAE folders to compare (typically one per layer); each SAE's config names its hook site."""
    out: Path = Path("runs/typographic")
    """Run directory: config.json, result.json, features_<n>_<site>.json, typographic_layers.png."""
    model: str | None = None
    """CLIP checkpoint folder or hub id; default: the shipped toy CLIP."""
    dataset: str = "world:typographic"
    """world:typographic[:N] (paired variants), or a labelled spec whose images get rendered attacks."""
    select_split: str = "train"
    choose_split: str = "val"
    report_split: str = "test"
    max_images: int | None = 1000
    """Use at most the first this many images of each split (None: all)."""
    templates: tuple[str, ...] | None = None
    """Class prompt templates; default: the dataset's own or 'a photo of a {}.' (Defense-Prefix)."""
    selection: FeatureSelection = field(default_factory=FeatureSelection)
    use_text_mask: bool = True
    """Score features on the written word's patches (when the dataset knows them)."""
    reference: Literal["clean", "blank"] = "clean"
    """The image the attacked one is compared with when ranking: clean, or blank (the same note without
    the word: isolates reading from the note's occlusion)."""
    max_clean_drop: float = 0.02
    """Choice rule: a candidate may lower clean accuracy on choose_split by at most this much."""
    controls: tuple[Control, ...] = ("random", "neurons")
    random_draws: int = 3
    attack_seed: int = 300
    """Seed of rendered attacks (ignored for the world, whose attacks are part of the task)."""
    images_per_batch: int = 256
    device: str = "cpu"
    seed: int = 0


@dataclass(frozen=True)
class TypographicMetrics:
    oca: float
    """Object accuracy under attack."""
    tcr: float
    """Text-capture rate: the prediction is the written word."""
    clean_accuracy: float
    blank_accuracy: float
    """Accuracy with the note but no word (the occlusion ceiling; = clean without a note)."""


@dataclass(frozen=True)
class TypographicMethod:
    method: str
    k: int
    tokens: str
    features: tuple[int, ...]
    choose: TypographicMetrics
    report: TypographicMetrics
    report_draws: tuple[TypographicMetrics, ...] = ()


@dataclass(frozen=True)
class TypographicLayer:
    site: str
    sae: str
    methods: dict[str, TypographicMethod]
    curve: tuple[tuple[int, str, float, float], ...]
    """SAE candidates on the choose split: (k, tokens, OCA, clean accuracy)."""


@dataclass(frozen=True)
class TypographicResult:
    dataset: str
    no_defense: TypographicMethod
    layers: tuple[TypographicLayer, ...]
    best_site: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, path: str | Path) -> TypographicResult:
        data = json.loads(Path(path).read_text())

        def method(d: dict) -> TypographicMethod:
            return TypographicMethod(d["method"], d["k"], d["tokens"], tuple(d["features"]),
                                     TypographicMetrics(**d["choose"]), TypographicMetrics(**d["report"]),
                                     tuple(TypographicMetrics(**m) for m in d["report_draws"]))

        layers = tuple(TypographicLayer(lay["site"], lay["sae"], {k: method(v) for k, v in lay["methods"].items()},
                                        tuple(tuple(c) for c in lay["curve"]))  # type: ignore[misc]
                       for lay in data["layers"])
        return cls(data["dataset"], method(data["no_defense"]), layers, data["best_site"])


def paired_split(spec: str, split: str, image_size: int, seed: int) -> dict[str, NamedLabelledDataset]:
    """{variant: dataset} for clean / attacked / blank, index-aligned."""
    prefix, _, body = spec.partition(":")
    if prefix == "world":
        head, sep, count = body.partition(":")
        if head != "typographic":
            raise ValueError(f"typographic-defense on the world needs world:typographic[:N], got {spec!r}")
        return {v: open_labelled(f"world:typographic/{v}{sep}{count}", split) for v in VARIANTS}
    base = open_labelled(spec, split)
    return {v: RenderedAttacks(base, image_size, v, seed) for v in VARIANTS}  # type: ignore[arg-type]


@dataclass
class PairedSplit:
    variants: dict[str, NamedLabelledDataset]
    indices: np.ndarray
    label: np.ndarray
    text: np.ndarray
    text_tokens: Tensor | None  # bool [N, T] patches holding the word, or None
    hidden: dict[tuple[str, str], Tensor] = field(default_factory=dict)


class TypographicTask:
    def __init__(self, backbone: Backbone, config: TypographicDefenseConfig):
        self.backbone, self.config = backbone, config
        self.sites: list[str] = []  # captured together, in one forward per batch
        names = dict(zip(SPLIT_ROLES, (config.select_split, config.choose_split, config.report_split), strict=True))
        self.splits = {role: self._split(paired_split(config.dataset, name, backbone.image_size, config.attack_seed),
                                         with_mask=role == "select")
                       for role, name in names.items()}
        attacked = self.splits["select"].variants["attacked"]
        templates = config.templates or getattr(attacked, "templates", None) or ("a photo of a {}.",)
        self.classifier = PromptClassifier(backbone, prompts_of(attacked), templates)

    def _split(self, variants: dict[str, NamedLabelledDataset], with_mask: bool) -> PairedSplit:
        attacked = variants["attacked"]
        labels = attacked.labels()
        n = len(attacked) if self.config.max_images is None else min(len(attacked), self.config.max_images)
        label, text = labels[LABEL][:n], labels[TEXT][:n]
        if (text == label).any():
            raise ValueError(f"{attacked!r}: a typographic attack must write a wrong class word")
        masks = None
        if with_mask and self.config.use_text_mask and text_mask(attacked, 0) is not None:
            masks = patch_token_masks([text_mask(attacked, i) for i in range(n)], self.backbone.grid)
        return PairedSplit(variants, np.arange(n), label, text, masks)

    def hidden(self, role: str, variant: str, site: str) -> Tensor:
        split = self.splits[role]
        if (variant, site) not in split.hidden:
            sites = list(dict.fromkeys([*self.sites, site]))
            captured = capture_sites(self.backbone, split.variants[variant], split.indices.tolist(), sites,
                                     self.config.images_per_batch, desc=f"{role} {variant}")
            split.hidden.update({(variant, s): h for s, h in captured.items()})
        return split.hidden[(variant, site)]

    def predict(self, role: str, variant: str, site: str, fn=None) -> np.ndarray:
        emb = embed(self.backbone, site, self.hidden(role, variant, site), fn, self.config.images_per_batch)
        return self.classifier.predict(emb)

    def measure(self, role: str, site: str, fn=None, variants=("attacked", "clean", "blank")) -> TypographicMetrics:
        split = self.splits[role]
        pred = {v: self.predict(role, v, site, fn) for v in variants}
        nan = float("nan")
        return TypographicMetrics(
            oca=float((pred["attacked"] == split.label).mean()), tcr=float((pred["attacked"] == split.text).mean()),
            clean_accuracy=float((pred["clean"] == split.label).mean()),
            blank_accuracy=float((pred["blank"] == split.label).mean()) if "blank" in pred else nan)


def rank_text_features(dictionary: LinearDictionary, task: TypographicTask, site: str, tokens: str,
                       max_target_information: float) -> Ranking:
    """The typographic statistic (module docstring) for every feature of `dictionary`."""
    split = task.splits["select"]
    attacked = task.hidden("select", "attacked", site)
    reference = task.hidden("select", task.config.reference, site)
    masks = split.text_tokens if split.text_tokens is not None else token_masks(tokens, attacked.shape[1])  # type: ignore[arg-type]
    if masks.ndim == 2:
        has_text = masks.any(dim=1)
        attacked, reference, masks = attacked[has_text], reference[has_text], masks[has_text]
    s_att, s_ref = image_scores(dictionary, attacked, masks), image_scores(dictionary, reference, masks)
    is_attacked = torch.cat([torch.ones(len(s_att)), torch.zeros(len(s_ref))]).bool()
    statistic = auroc(torch.cat([s_att, s_ref]), is_attacked) - 0.5
    clean = task.hidden("select", "clean", site)
    clean_all = image_scores(dictionary, clean, token_masks("all", clean.shape[1]))
    classes = torch.from_numpy(np.stack([split.label == c for c in np.unique(split.label)], axis=1))
    target = (auroc(clean_all, classes) - 0.5).abs().amax(dim=0)
    return rank_features(statistic, target, max_target_information)


def suppress_and_choose(task: TypographicTask, site: str, dictionary: LinearDictionary, method: str,
                        op: str) -> tuple[TypographicMethod, list[Choice], dict[str, Ranking]]:
    config, sel = task.config, task.config.selection
    rankings = {tok: rank_text_features(dictionary, task, site, tok, sel.max_target_information) for tok in sel.tokens}
    clean = task.hidden("select", "clean", site)
    means = {tok: mean_codes(dictionary, clean, token_masks(tok, clean.shape[1])) for tok in sel.tokens}  # type: ignore[arg-type]

    def fn(k: int, tok: str):
        return suppression_fn(dictionary, rankings[tok].features[:k].tolist(), tok, op, means[tok], sel.form)  # type: ignore[arg-type]

    base = task.measure("choose", site, variants=("attacked", "clean"))
    candidates = [Choice(0, sel.tokens[0], {"oca": base.oca, "clean": base.clean_accuracy})]
    for tok in sel.tokens:
        for k in sel.n_features:
            if k <= len(rankings[tok].features):
                m = task.measure("choose", site, fn(k, tok), variants=("attacked", "clean"))
                candidates.append(Choice(k, tok, {"oca": m.oca, "clean": m.clean_accuracy}))  # type: ignore[arg-type]
    chosen = choose(candidates, key=lambda c: c.metrics["oca"],
                    allowed=lambda c: c.metrics["clean"] >= base.clean_accuracy - config.max_clean_drop)
    result = TypographicMethod(method, chosen.k, chosen.tokens,
                               tuple(rankings[chosen.tokens].features[:chosen.k].tolist()),
                               task.measure("choose", site, fn(chosen.k, chosen.tokens)),
                               task.measure("report", site, fn(chosen.k, chosen.tokens)))
    return result, candidates, rankings


def random_control(task: TypographicTask, site: str, dictionary: LinearDictionary, sae_choice: TypographicMethod,
                   alive: Tensor) -> TypographicMethod:
    gen = torch.Generator().manual_seed(task.config.seed)
    draws, chooses, features = [], [], []
    op = task.config.selection.op  # the SAE's own op, so the control differs only in which features
    hidden = task.hidden("select", "clean", site)
    means = mean_codes(dictionary, hidden, token_masks(sae_choice.tokens, hidden.shape[1])) if sae_choice.k else None  # type: ignore[arg-type]
    for _ in range(task.config.random_draws):
        feats = random_features(alive, sae_choice.k, gen) if sae_choice.k else []
        fn = suppression_fn(dictionary, feats, sae_choice.tokens, op, means, task.config.selection.form)  # type: ignore[arg-type]
        chooses.append(task.measure("choose", site, fn))
        draws.append(task.measure("report", site, fn))
        features.extend(feats)
    return TypographicMethod("random", sae_choice.k, sae_choice.tokens, tuple(features), _mean(chooses),
                             _mean(draws), tuple(draws))


def _mean(ms: list[TypographicMetrics]) -> TypographicMetrics:
    return TypographicMetrics(*(float(np.mean([getattr(m, f.name) for m in ms]))
                                for f in dataclasses.fields(TypographicMetrics)))


def defend_layer(task: TypographicTask, sae_path: Path, site: str,
                 dictionary: LinearDictionary) -> tuple[TypographicLayer, dict]:
    config = task.config
    sae_result, candidates, rankings = suppress_and_choose(task, site, dictionary, "sae", config.selection.op)
    methods = {"sae": sae_result}
    if "random" in config.controls:
        clean = task.hidden("select", "clean", site)
        alive = image_scores(dictionary, clean, token_masks("all", clean.shape[1])).amax(dim=0) > 0
        methods["random"] = random_control(task, site, dictionary, sae_result, alive)
    if "neurons" in config.controls:
        neurons = DirectionSet.neurons(task.backbone.d_model)
        methods["neurons"] = suppress_and_choose(task, site, neurons, "neurons", "mean_ablate")[0]
    ranking = rankings[sae_result.tokens if sae_result.k else config.selection.tokens[0]]
    listed = ranking.features[:64]
    attacked = task.hidden("select", "attacked", site)
    scores = image_scores(dictionary, attacked, token_masks("all", attacked.shape[1]))[:, listed]
    top = scores.topk(min(8, len(scores)), dim=0).indices.T
    details = {"site": site, "suppressed": list(sae_result.features),
               "statistic": "AUROC(max code on the word's patches: attacked vs clean) - 0.5",
               "features": [{"feature": int(j), "statistic": float(ranking.statistic[j]),
                             "target_information": float(ranking.target_information[j]),
                             "suppressed": int(j) in sae_result.features,
                             "top_attacked_images": [int(i) for i in top[r]],
                             "top_concepts": top_label_concepts(task.splits["select"].variants["attacked"],
                                                                [int(i) for i in top[r]])}
                            for r, j in enumerate(listed.tolist())]}
    curve = tuple((c.k, c.tokens, c.metrics["oca"], c.metrics["clean"]) for c in candidates)
    return TypographicLayer(site, str(sae_path), methods, curve), details  # type: ignore[arg-type]


def run_typographic_defense(backbone: Backbone, config: TypographicDefenseConfig) -> TypographicResult:
    if not config.saes:
        raise ValueError("typographic-defense needs at least one SAE (--saes DIR [DIR ...])")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    task = TypographicTask(backbone, config)
    dictionaries = [load_dictionary(Path(path), config.device) for path in config.saes]
    task.sites = list(dict.fromkeys(site for site, _ in dictionaries))
    layers = []
    for n, (path, (site, dictionary)) in enumerate(zip(config.saes, dictionaries, strict=True)):
        layer, details = defend_layer(task, Path(path), site, dictionary)
        layers.append(layer)
        atomic_write_json(out / f"features_{n}_{layer.site}.json", details)
        print(_layer_line(layer))
    site = layers[-1].site  # no defense does not depend on the site; this one is cached
    base = TypographicMethod("no_defense", 0, "none", (), task.measure("choose", site), task.measure("report", site))
    best = max(layers, key=lambda lay: lay.methods["sae"].choose.oca)
    result = TypographicResult(config.dataset, base, tuple(layers), best.site)
    atomic_write_json(out / "result.json", result.to_json())
    plot_layers(result, out / "typographic_layers.png")
    print(summary(result))
    return result


def _fmt(m: TypographicMetrics) -> str:
    return f"OCA {m.oca:.3f} TCR {m.tcr:.3f} clean {m.clean_accuracy:.3f} blank {m.blank_accuracy:.3f}"


def _layer_line(layer: TypographicLayer) -> str:
    return f"[typographic] {layer.site}: " + "; ".join(f"{n} k={m.k} {m.tokens}: {_fmt(m.report)}"
                                                     for n, m in layer.methods.items())


def summary(result: TypographicResult) -> str:
    lines = [f"typographic-defense on {result.dataset} (report split): no defense {_fmt(result.no_defense.report)}"]
    lines += ["  " + _layer_line(lay) for lay in result.layers]
    lines.append(f"  best layer (choose split): {result.best_site}")
    return "\n".join(lines)


def plot_layers(result: TypographicResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(result.layers))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("sae", "neurons", "random"):
        if all(name in lay.methods for lay in result.layers):
            ax.plot(x, [lay.methods[name].report.oca for lay in result.layers], marker="o", label=f"{name} OCA")
    base = result.no_defense.report
    ax.axhline(base.oca, color="grey", ls="--", label="no defense OCA")
    ax.axhline(base.clean_accuracy, color="grey", ls=":", label="clean accuracy")
    ax.axhline(base.blank_accuracy, color="black", ls="-.", label="blank-note ceiling")
    ax.set_xticks(x, [lay.site for lay in result.layers], rotation=20, fontsize=7)
    ax.set_ylabel("accuracy (report split)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def typographic_defense(config: TypographicDefenseConfig) -> TypographicResult:
    """`clipsteer typographic-defense` (see the module docstring)."""
    from clipsteer.world.paths import shipped_toy_clip

    torch.manual_seed(config.seed)
    backbone = Backbone.from_pretrained(config.model or shipped_toy_clip(), device=config.device)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(config.out) / "config.json", json.loads(json.dumps(dataclasses.asdict(config), default=str)))
    return run_typographic_defense(backbone, config)
