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

Suppression, choice and controls follow `debias` (the shared engine and `SuppressionResult` of
`clipsteer.experiments.suppression`): k and tokens maximise object accuracy under attack
(OCA) on `choose_split` among candidates whose clean accuracy drops at most `max_clean_drop`; metrics on
`report_split`: OCA, text-capture rate (TCR: prediction = the written word), clean accuracy, blank-note
accuracy. Controls: `random` (k random alive features at the SAE's choice) and `neurons` (same statistic,
mean-ablated, own k).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from clipsteer.data.labelled import open_labelled
from clipsteer.data.protocol import LABEL, TEXT, NamedLabelledDataset, text_mask
from clipsteer.data.typographic import VARIANTS, RenderedAttacks
from clipsteer.evaluate.auroc import auroc
from clipsteer.evaluate.groups import TypographicReport, typographic_report
from clipsteer.evaluate.zero_shot import ZeroShotClassifier
from clipsteer.experiments.configs import TypographicDefenseConfig
from clipsteer.experiments.suppression import (
    MethodResult,
    Ranking,
    SuppressionResult,
    TaskBase,
    capture_sites,
    embed,
    image_scores,
    patch_token_masks,
    prompts_of,
    rank_features,
    run_experiment,
    suppression_layers,
    token_masks,
    top_label_concepts,
)
from clipsteer.models.backbone import Backbone, SiteFn, TokenSelection
from clipsteer.steer.dictionary import LinearDictionary


def paired_split(spec: str, split: str, image_size: int, seed: int, model_dir: Path | None = None
                 ) -> dict[str, NamedLabelledDataset]:
    """{variant: dataset} for clean / attacked / blank, index-aligned (matched to the model in `model_dir`)."""
    prefix, _, body = spec.partition(":")
    if prefix == "world":
        head, sep, count = body.partition(":")
        if head != "typographic":
            raise ValueError(f"typographic-defense on the world needs world:typographic[:N], got {spec!r}")
        return {v: open_labelled(f"world:typographic/{v}{sep}{count}", split, model_dir=model_dir) for v in VARIANTS}
    base = open_labelled(spec, split, model_dir=model_dir)
    return {v: RenderedAttacks(base, image_size, v, seed) for v in VARIANTS}  # type: ignore[arg-type]


@dataclass
class PairedSplit:
    variants: dict[str, NamedLabelledDataset]
    indices: np.ndarray
    label: np.ndarray
    text: np.ndarray
    text_tokens: Tensor | None  # bool [N, T] patches holding the word, or None
    hidden: dict[tuple[str, str], Tensor] = field(default_factory=dict)


class TypographicTask(TaskBase):
    """The paired splits and classifier of one typographic-defense run (a `SuppressionTask`)."""

    score, guard = "attacked_accuracy", "clean_accuracy"
    config: TypographicDefenseConfig

    def __init__(self, backbone: Backbone, config: TypographicDefenseConfig):
        super().__init__(backbone, config, config.max_clean_drop)
        self.splits = {role: self._split(paired_split(config.dataset, name, backbone.image_size, config.attack_seed,
                                                      backbone.model_dir),
                                         with_mask=role == "select")
                       for role, name in self.split_names.items()}
        attacked = self.splits["select"].variants["attacked"]
        self.classifier = ZeroShotClassifier(backbone, attacked.label_names()[LABEL], self.templates(attacked),
                                             prompts_of(attacked))

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

    def reference_hidden(self, site: str) -> Tensor:
        return self.hidden("select", "clean", site)

    def predict(self, role: str, variant: str, site: str, fn: SiteFn | None = None) -> np.ndarray:
        emb = embed(self.backbone, site, self.hidden(role, variant, site), fn, self.config.images_per_batch)
        return self.classifier.predict_embeddings(emb)

    def measure(self, role: str, site: str, fn: SiteFn | None = None) -> TypographicReport:
        """OCA, TCR, clean accuracy and the blank-note ceiling."""
        split = self.splits[role]
        return typographic_report(self.predict(role, "clean", site, fn), self.predict(role, "attacked", site, fn),
                                  split.label, split.text, self.predict(role, "blank", site, fn))

    def choice_outcomes(self, site: str, fn: SiteFn | None = None) -> tuple[float, np.ndarray]:
        """OCA on the choose split, and per image whether the clean image is classified right."""
        label = self.splits["choose"].label
        attacked_right = self.predict("choose", "attacked", site, fn) == label
        return float(attacked_right.mean()), self.predict("choose", "clean", site, fn) == label

    def rank(self, dictionary: LinearDictionary, site: str, tokens: TokenSelection) -> Ranking:
        """The typographic statistic (module docstring) for every feature of `dictionary`."""
        split = self.splits["select"]
        attacked = self.hidden("select", "attacked", site)
        reference = self.hidden("select", self.config.reference, site)
        masks = split.text_tokens if split.text_tokens is not None else token_masks(tokens, attacked.shape[1])
        if masks.ndim == 2:
            has_text = masks.any(dim=1)
            attacked, reference, masks = attacked[has_text], reference[has_text], masks[has_text]
        s_att, s_ref = image_scores(dictionary, attacked, masks), image_scores(dictionary, reference, masks)
        is_attacked = torch.cat([torch.ones(len(s_att)), torch.zeros(len(s_ref))]).bool()
        statistic = auroc(torch.cat([s_att, s_ref]), is_attacked) - 0.5
        clean = self.hidden("select", "clean", site)
        clean_all = image_scores(dictionary, clean, token_masks("all", clean.shape[1]))
        classes = torch.from_numpy(np.stack([split.label == c for c in np.unique(split.label)], axis=1))
        target = (auroc(clean_all, classes) - 0.5).abs().amax(dim=0)
        return rank_features(statistic, target, self.selection.max_target_information)


def feature_details(task: TypographicTask, dictionary: LinearDictionary, site: str, ranking: Ranking,
                    chosen: MethodResult, n_listed: int = 64, n_images: int = 8) -> dict:
    """The top-ranked features: statistic, target information and top-activating attacked images."""
    listed = ranking.features[:n_listed]
    attacked = task.hidden("select", "attacked", site)
    scores = image_scores(dictionary, attacked, token_masks("all", attacked.shape[1]))[:, listed]
    top = scores.topk(min(n_images, len(scores)), dim=0).indices.T
    images = task.splits["select"].variants["attacked"]
    return {"site": site, "suppressed": list(chosen.features),
            "statistic": "AUROC(max code on the word's patches: attacked vs clean) - 0.5",
            "features": [{"feature": int(j), "statistic": float(ranking.statistic[j]),
                          "target_information": float(ranking.target_information[j]),
                          "suppressed": int(j) in chosen.features,
                          "top_attacked_images": [int(i) for i in top[r]],
                          "top_concepts": top_label_concepts(images, [int(i) for i in top[r]])}
                         for r, j in enumerate(listed.tolist())]}


def run_typographic_defense(backbone: Backbone, config: TypographicDefenseConfig, out: Path) -> SuppressionResult:
    """The library function under `typographic-defense`: every SAE in `config.saes` and the unedited model.
    Writes the per-layer feature details into `out`; returns the result (the caller writes it)."""
    task = TypographicTask(backbone, config)
    layers, best_site = suppression_layers(task, config.saes, config.device, config.controls, out,
                                           partial(feature_details, task))
    site = layers[-1].site  # no defense does not depend on the site; this one is cached
    base = MethodResult("no_defense", 0, "none", (), task.measure("choose", site), task.measure("report", site))
    return SuppressionResult("typographic", config.dataset, TypographicTask.score, TypographicTask.guard, base, {},
                             layers, best_site)


def typographic_defense(config: TypographicDefenseConfig) -> SuppressionResult:
    """`clipsteer typographic-defense` (see the module docstring) under the run-folder protocol."""
    return run_experiment("typographic-defense", config, run_typographic_defense, "typographic_layers.png")
