"""`clipsteer sparsity-study`: the paper's sparsity findings on one CLIP, with its vanilla recipe (ReLU + L1).

At every layer (resid_post) of the vision tower and of the text tower, one ReLU SAE is trained with the
same recipe on that layer's tokens, and its L0 is measured on held-out tokens:
- vision: the CLS token and the patch tokens separately (the paper: CLS sparse early and denser late,
  patches dense throughout);
- text: the eos token (the pooled one, the text tower's analogue of CLS) and the other real caption
  tokens (bos and words; padding dropped) — vision vs language within one CLIP.
L0 is also given as a fraction of the dictionary (`l0 / d_sae`, the paper's "density"). Absolute L0
depends on λ and on training length; the comparisons that mean something are within one table (same
λ, same tokens per SAE). Writes `sparsity.csv` and `sparsity.png`, then, last, `sparsity.json`
(`SparsityStudyResult`, one `SparsityRow` per tower × layer).

The component configs nest (`--trainer.total-tokens`, `--objective.sparsity-coefficient`); the study
owns the trainer's device and seed (`--device`, `--seed`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from clipsteer.atomic import atomic_write_bytes, atomic_write_text
from clipsteer.composite import own
from clipsteer.data.protocol import Captioned
from clipsteer.data.resolve import open_dataset
from clipsteer.errors import ConfigError, check_positive
from clipsteer.experiments.configs import SparsityStudyConfig
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.results import ResultFile, to_json
from clipsteer.run_folder import folder_lock
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.sae.recipe import SAERecipe, TrainerConfig
from clipsteer.sae.source import TensorSource
from clipsteer.sae.trainer import Trainer

COMMAND = "sparsity-study"



@dataclass(frozen=True)
class SparsityRow:
    tower: Literal["vision", "text"]
    layer: int
    d_sae: int
    train_tokens: int
    explained_variance: float
    l0_all: float
    l0_first: float
    """Vision: the CLS token. Text: the eos (pooled) token."""
    l0_rest: float
    """Vision: patch tokens. Text: the other real tokens (bos and words)."""

    @property
    def density_first(self) -> float:
        return self.l0_first / self.d_sae

    @property
    def density_rest(self) -> float:
        return self.l0_rest / self.d_sae

    def flat(self) -> dict[str, Any]:
        return {**to_json(self), "density_first": self.density_first, "density_rest": self.density_rest}


@dataclass(frozen=True)
class SparsityStudyResult(ResultFile):
    FILE: ClassVar[str] = "sparsity.json"
    rows: tuple[SparsityRow, ...]
    config: dict


def read_captions(spec: str, n: int, model_dir: Path | None = None) -> list[str]:
    path = Path(spec)
    if path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        dataset = open_dataset(spec, model_dir=model_dir)
        if not isinstance(dataset, Captioned):
            raise ConfigError(f"--captions {spec!r}: neither a text file nor a dataset with captions")
        lines = dataset.captions(0, min(n, len(dataset)))  # type: ignore[arg-type]
    if len(lines) < n:
        raise ConfigError(f"--captions {spec!r} holds {len(lines)} captions; the study needs --n-captions {n}")
    return lines[:n]


@torch.no_grad()
def vision_tokens(backbone: Backbone, dataset: Any, n: int, images_per_batch: int = 100) -> dict[int, Tensor]:
    """{layer: [n, T, d]} resid_post of every block for the first n images (fp16)."""
    sites = [f"blocks.{layer}.resid_post" for layer in range(backbone.n_layers)]
    parts: dict[int, list[Tensor]] = {layer: [] for layer in range(backbone.n_layers)}
    for start in tqdm(range(0, n, images_per_batch), desc="vision tokens", leave=False):
        pixels = backbone.pixels([dataset.load(i) for i in range(start, min(start + images_per_batch, n))])
        captured = backbone.capture(pixels, sites)
        for layer, site in enumerate(sites):
            parts[layer].append(captured[site].half())
    return {layer: torch.cat(p) for layer, p in parts.items()}


@torch.no_grad()
def text_tokens(backbone: Backbone, captions: list[str],
                texts_per_batch: int = 500) -> tuple[dict[int, Tensor], Tensor, Tensor]:
    """({layer: [n, L, d]} text resid_post, valid bool [n, L], is_eos bool [n, L]) for the captions."""
    if backbone.n_text_layers is None:
        raise ConfigError(f"{backbone.name} has no text tower: the study's vision-vs-language half needs one")
    sites = [f"text.blocks.{layer}.resid_post" for layer in range(backbone.n_text_layers)]
    max_len = backbone.model.config.text_config.max_position_embeddings
    parts: dict[int, list[Tensor]] = {layer: [] for layer in range(backbone.n_text_layers)}
    valid_parts = []
    for start in tqdm(range(0, len(captions), texts_per_batch), desc="text tokens", leave=False):
        acts, valid = backbone.capture_text(captions[start:start + texts_per_batch], sites)
        pad = max_len - valid.shape[1]  # batches pad to their own longest caption: bring all to max_len
        valid_parts.append(torch.nn.functional.pad(valid, (0, pad)))
        for layer, site in enumerate(sites):
            parts[layer].append(torch.nn.functional.pad(acts[site], (0, 0, 0, pad)).half())
    valid = torch.cat(valid_parts)
    lengths = valid.sum(dim=1)
    is_eos = torch.zeros_like(valid)
    is_eos[torch.arange(len(valid)), lengths - 1] = True  # padding follows eos, so eos is the last real token
    return {layer: torch.cat(p) for layer, p in parts.items()}, valid, is_eos


def train_relu_sae(rows: Tensor, config: SparsityStudyConfig, trainer: TrainerConfig, name: str,
                   out: Path) -> SparseAutoencoder:
    """rows [n, d] → a ReLU SAE (×expansion_factor) trained with the study's objective and trainer."""
    d = rows.shape[1]
    recipe = SAERecipe(name, SAEConfig(d_in=d, d_sae=d * config.expansion_factor, architecture="relu"),
                       config.objective)
    return Trainer([recipe], TensorSource(rows.float()), trainer, run_dir=out / name).run()[name]


@torch.no_grad()
def measure(sae: SparseAutoencoder, x: Tensor, first: Tensor, rest: Tensor) -> tuple[float, float, float, float]:
    """(EV, L0 over all rows, L0 over rows `first`, L0 over rows `rest`) for rows x [n, d]; first, rest bool [n]."""
    x = x.float()
    out = sae(x)
    l0 = (out.codes > 0).float().sum(dim=-1)
    ev = 1 - (out.reconstruction - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    return float(ev), float(l0.mean()), float(l0[first].mean()), float(l0[rest].mean())


def sparsity_study(config: SparsityStudyConfig) -> SparsityStudyResult:
    check_positive(config, ("n_images", "n_captions", "expansion_factor"))
    if not 0 < config.held_out_fraction < 1:
        raise ConfigError(f"--held-out-fraction must be in (0, 1), got {config.held_out_fraction}")
    trainer = own(config.trainer, COMMAND, "trainer", device=config.device, seed=config.seed)
    torch.manual_seed(config.seed)
    backbone = Backbone.from_pretrained(resolve_model(config.model), device=config.device)
    captions = read_captions(config.captions, config.n_captions, backbone.model_dir)  # fail on a bad spec before any training
    out = Path(config.out)
    rows: list[SparsityRow] = []
    with folder_lock(out, COMMAND):
        n_train_images = int(config.n_images * (1 - config.held_out_fraction))
        vision = vision_tokens(backbone, open_dataset(config.images, model_dir=backbone.model_dir), config.n_images)
        for layer, acts in vision.items():  # acts [n, T, d]; token 0 is CLS
            sae = train_relu_sae(acts[:n_train_images].reshape(-1, acts.shape[-1]), config, trainer,
                                 f"vision_layer{layer}", out)
            test = acts[n_train_images:]
            cls = torch.zeros(test.shape[:2], dtype=torch.bool)
            cls[:, 0] = True
            ev, l0, l0_cls, l0_patch = measure(sae, test.reshape(-1, test.shape[-1]), cls.flatten(), ~cls.flatten())
            rows.append(SparsityRow("vision", layer, sae.d_sae, trainer.total_tokens, ev, l0, l0_cls, l0_patch))
            print(f"[{COMMAND}] {rows[-1].flat()}")
        del vision
        n_train_captions = int(len(captions) * (1 - config.held_out_fraction))
        text, valid, is_eos = text_tokens(backbone, captions)
        for layer, acts in text.items():  # acts [n, L, d]; only valid rows are used
            sae = train_relu_sae(acts[:n_train_captions][valid[:n_train_captions]], config, trainer,
                                 f"text_layer{layer}", out)
            test_valid = valid[n_train_captions:]
            eos = is_eos[n_train_captions:][test_valid]
            ev, l0, l0_eos, l0_rest = measure(sae, acts[n_train_captions:][test_valid], eos, ~eos)
            rows.append(SparsityRow("text", layer, sae.d_sae, trainer.total_tokens, ev, l0, l0_eos, l0_rest))
            print(f"[{COMMAND}] {rows[-1].flat()}")
        result = SparsityStudyResult(tuple(rows), to_json(config))
        write_table(result, out)
        plot_sparsity(result, out / "sparsity.png")
        result.write(out)
    return result


def write_table(result: SparsityStudyResult, out: Path) -> None:
    data = [r.flat() for r in result.rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(data[0]))
    writer.writeheader()
    writer.writerows(data)
    atomic_write_text(out / "sparsity.csv", buffer.getvalue())


def plot_sparsity(result: SparsityStudyResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(5.5, 3.4))
    for tower, first, rest, colour in (("vision", "CLS", "patches", "tab:blue"),
                                       ("text", "eos", "other tokens", "tab:orange")):
        chosen = [r for r in result.rows if r.tower == tower]
        layers = [r.layer for r in chosen]
        axis.plot(layers, [r.density_first for r in chosen], marker="o", color=colour, label=f"{tower}: {first}")
        axis.plot(layers, [r.density_rest for r in chosen], marker="s", linestyle="--", color=colour,
                  label=f"{tower}: {rest}")
    axis.set_xlabel("layer (resid_post)")
    axis.set_ylabel("L0 / d_sae (ReLU + L1)")
    axis.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
