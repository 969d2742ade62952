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
The select → suppress → choose → control engine and the typed `SuppressionResult` are shared with
`typographic-defense` (`clipsteer.experiments.suppression`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clipsteer.data.labelled import open_labelled
from clipsteer.data.protocol import LABEL, SPURIOUS, NamedLabelledDataset, group_labels
from clipsteer.evaluate.groups import GroupReport, group_report
from clipsteer.evaluate.zero_shot import ZeroShotClassifier
from clipsteer.experiments.configs import DebiasConfig
from clipsteer.experiments.suppression import (
    MethodResult,
    Ranking,
    SuppressionResult,
    TaskBase,
    capture_sites,
    embed,
    image_scores,
    prompts_of,
    rank_features,
    run_experiment,
    suppression_layers,
    token_masks,
    top_label_concepts,
    within_auroc,
)
from clipsteer.models.backbone import Backbone, SiteFn, TokenSelection
from clipsteer.steer.dictionary import LinearDictionary


@dataclass
class SplitData:
    """One split's labels and, per site, its captured activations."""

    dataset: NamedLabelledDataset
    indices: np.ndarray
    label: np.ndarray
    spurious: np.ndarray
    group: np.ndarray
    hidden: dict[str, Tensor] = field(default_factory=dict)


class GroupTask(TaskBase):
    """The splits, classifier and group weights of one debias run (a `SuppressionTask`)."""

    score, guard = "wga", "accuracy"
    config: DebiasConfig

    def __init__(self, backbone: Backbone, config: DebiasConfig):
        super().__init__(backbone, config, config.max_avg_drop)
        self.splits = {role: self._split(open_labelled(config.dataset, name, model_dir=backbone.model_dir))
                       for role, name in self.split_names.items()}
        reference = self.splits["select"].dataset
        self.group_names = group_labels(reference)[1]
        counts = np.bincount(self.splits["select"].group, minlength=len(self.group_names)).astype(float)
        self.group_weights = dict(zip(self.group_names, (counts / counts.sum()).tolist(), strict=True))
        self.classifier = ZeroShotClassifier(backbone, reference.label_names()[LABEL], self.templates(reference),
                                             prompts_of(reference))
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

    def reference_hidden(self, site: str) -> Tensor:
        return self.hidden("select", site)

    def report(self, role: str, predictions: np.ndarray) -> GroupReport:
        split = self.splits[role]
        return group_report(predictions == split.label, split.group, self.group_names)

    def predict(self, role: str, site: str, fn: SiteFn | None = None) -> np.ndarray:
        embeddings = embed(self.backbone, site, self.hidden(role, site), fn, self.config.images_per_batch)
        return self.classifier.predict_embeddings(embeddings)

    def measure(self, role: str, site: str, fn: SiteFn | None = None) -> GroupReport:
        return self.report(role, self.predict(role, site, fn))

    def choice_outcomes(self, site: str, fn: SiteFn | None = None) -> tuple[float, np.ndarray]:
        """Worst-group accuracy on the choose split, and per image whether it is classified right."""
        predictions = self.predict("choose", site, fn)
        return self.report("choose", predictions).wga, predictions == self.splits["choose"].label

    def rank(self, dictionary: LinearDictionary, site: str, tokens: TokenSelection) -> Ranking:
        split = self.splits["select"]
        return rank_spurious(dictionary, self.hidden("select", site), split.label, split.spurious, tokens,
                             self.selection.max_target_information)


def rank_spurious(dictionary: LinearDictionary, hidden: Tensor, label: np.ndarray, spurious: np.ndarray,
                  tokens: TokenSelection, max_target_information: float) -> Ranking:
    """The debias statistic (module docstring) for every feature of `dictionary` on hidden [N, T, d]."""
    scores = image_scores(dictionary, hidden, token_masks(tokens, hidden.shape[1]))
    strength = within_auroc(scores, spurious, strata=label)
    target = within_auroc(scores, label, strata=spurious)
    return rank_features(strength, target, max_target_information)


def orth_proj(task: GroupTask, site: str) -> MethodResult:
    """Project the spurious text direction out of the (unedited) image embeddings."""
    text = task.spurious_text  # [A, E]
    directions = text[1:] - text[:1]  # [A-1, E]: differences span the spurious subspace
    basis = torch.linalg.qr(directions.T.double()).Q.float()  # [E, A-1], orthonormal

    def project(role: str) -> GroupReport:
        emb = embed(task.backbone, site, task.hidden(role, site), None, task.config.images_per_batch)
        projected = F.normalize(emb - (emb @ basis) @ basis.T, dim=-1)
        return task.report(role, task.classifier.predict_embeddings(projected))

    return MethodResult("orth_proj", 0, "none", (), project("choose"), project("report"))


def feature_details(task: GroupTask, dictionary: LinearDictionary, site: str, ranking: Ranking,
                    chosen: MethodResult, n_listed: int = 64, n_images: int = 8) -> dict:
    """The top-ranked features: statistic, target information and top-activating select-split images."""
    hidden = task.hidden("select", site)
    listed = ranking.features[:n_listed]
    tokens: TokenSelection = chosen.tokens if chosen.k else task.config.selection.tokens[0]  # type: ignore[assignment]
    scores = image_scores(dictionary, hidden, token_masks(tokens, hidden.shape[1]))[:, listed]
    split = task.splits["select"]
    top = scores.topk(min(n_images, len(scores)), dim=0).indices.T  # [n_listed, n_images]
    return {"site": site, "tokens": tokens, "suppressed": list(chosen.features),
            "statistic": "mean over classes of |AUROC(spurious | class) - 0.5|",
            "features": [{"feature": int(j), "spurious_strength": float(ranking.statistic[j]),
                          "target_information": float(ranking.target_information[j]),
                          "suppressed": int(j) in chosen.features,
                          "top_images": [int(split.indices[i]) for i in top[r]],
                          "top_concepts": top_label_concepts(split.dataset, [int(split.indices[i]) for i in top[r]])}
                         for r, j in enumerate(listed.tolist())]}


def run_debias(backbone: Backbone, config: DebiasConfig, out: Path) -> SuppressionResult:
    """The library function under `debias`: every SAE in `config.saes`, plus zero-shot and Orth-Proj.
    Writes the per-layer feature details into `out`; returns the result (the caller writes it)."""
    task = GroupTask(backbone, config)
    controls = [c for c in config.controls if c != "orth_proj"]
    layers, best_site = suppression_layers(task, config.saes, config.device, controls, out,
                                           partial(feature_details, task))
    site = layers[-1].site  # zero-shot does not depend on the site; this one is cached
    base = MethodResult("zero_shot", 0, "none", (), task.measure("choose", site), task.measure("report", site))
    references = {"orth_proj": orth_proj(task, site)} if "orth_proj" in config.controls else {}
    return SuppressionResult("debias", config.dataset, GroupTask.score, GroupTask.guard, base, references, layers,
                             best_site, task.group_weights)


def debias(config: DebiasConfig) -> SuppressionResult:
    """`clipsteer debias` (see the module docstring) under the run-folder protocol."""
    return run_experiment("debias", config, run_debias, "debias_layers.png")
