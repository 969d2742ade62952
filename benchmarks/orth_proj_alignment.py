"""Why Orth-Proj is so strong on the toy world: how closely the image embeddings' spurious shift follows the
spurious text direction that Orth-Proj projects out (issue 9).

For each world group task, on the report split (test, first `--max-images` images), with the unedited toy CLIP:
  shift   = mean over classes of [mean embedding (spurious = 1) − mean embedding (spurious = 0)]   [E]
  text    = normalised difference of the two spurious prompts' embeddings (Orth-Proj's direction)  [E]
and prints cos(shift, text), the share of the shift's squared norm along `text`, and how well thresholding the
projection on `text` at its median reads the spurious value. Near 1 means the spurious attribute is a single
text-nameable direction of the embedding, the case Orth-Proj was made for.

It also prints Orth-Proj's test worst-group accuracy on the background task twice: with the family prompts
(water, land: the `debias` control) and told the background types (sea, pond, grass, sand: the span of their
three differences projected out), on a model whose captions name the types (a habitat world,
`--world.p-caption-background-type`; others do not know the words).

    PYTHONPATH=src python benchmarks/orth_proj_alignment.py --max-images 1000
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from clipsteer.experiments.configs import DebiasConfig
from clipsteer.experiments.debias import GroupTask, orth_proj
from clipsteer.experiments.suppression import embed
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.world.factors import BACKGROUND_NAMES
from clipsteer.world.toy_clip import world_config_of


def alignment(task: GroupTask, site: str) -> tuple[float, float, float]:
    """(cos(shift, text), share of ‖shift‖² along text, median-threshold accuracy on the text axis)."""
    emb = F.normalize(embed(task.backbone, site, task.hidden("report", site), None, 256), dim=-1)  # [N, E]
    split = task.splits["report"]
    text = F.normalize(task.spurious_text[1] - task.spurious_text[0], dim=0)  # [E]
    shifts = [emb[torch.as_tensor((split.label == c) & (split.spurious == 1))].mean(0)
              - emb[torch.as_tensor((split.label == c) & (split.spurious == 0))].mean(0)
              for c in np.unique(split.label)]
    shift = torch.stack(shifts).mean(0)
    along = emb @ text
    read = float(((along > along.median()).numpy() == (split.spurious == 1)).mean())
    return float(F.cosine_similarity(shift, text, dim=0)), float((shift @ text) ** 2 / shift.pow(2).sum()), read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--model", default=None, help="CLIP checkpoint folder; default: the shipped toy CLIP")
    args = parser.parse_args()
    backbone = Backbone.from_pretrained(resolve_model(args.model), device="cpu")
    site = f"blocks.{backbone.n_layers - 1}.resid_post"  # the last block: the embedding follows directly
    for name in ("background", "attribute"):
        task = GroupTask(backbone, DebiasConfig(dataset=f"world:{name}", max_images=args.max_images, model=args.model))
        cos, share, read = alignment(task, site)
        print(f"{name}: cos(image spurious shift, text direction) {cos:.3f}; share of the shift along it {share:.3f}; "
              f"spurious read off the text axis {read:.3f}")
        if name == "background" and world_config_of(backbone.model_dir).p_caption_background_type > 0:
            family_wga = orth_proj(task, site).report.wga
            task.spurious_text = backbone.zero_shot_head(BACKGROUND_NAMES, ("a photo of a {}",)).cpu()  # [4, E]
            print(f"background: Orth-Proj test WGA with the family prompts {family_wga:.3f}, "
                  f"told the background types {orth_proj(task, site).report.wga:.3f}")


if __name__ == "__main__":
    main()
