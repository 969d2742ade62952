"""`clipsteer push SAE org/repo`: upload an SAE folder with a generated model card to the Hugging Face Hub.

The folder uploaded (`stage_push_folder`, also what `--dry-run` leaves on disk):
    config.json + sae.safetensors   the SAE in clipsteer's format (a foreign SAE is converted first)
    eval.json                       `clipsteer eval`'s result, when there is one
    README.md                       the model card: model, site, tokens, architecture, training tokens,
                                    EV, L0, dead fraction, CE recovered, and the `clipsteer train` command
                                    that trains this SAE, rebuilt from the run's config.json
Where the card's facts come from: the SAE's config.json; `eval.json` (default: beside the SAE); the
training run folder (default: `<run>/saes/<name>/` → `<run>`, when it holds the trainer's config.json).
A fact with no source is written as "not recorded", never guessed. Loading it back:
`load_any_sae("hf://org/repo[/subfolder]")`.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipsteer.atomic import atomic_directory, atomic_write_text
from clipsteer.evaluate.results import EvalResult
from clipsteer.hub import HubError, hub_offline, parse_hub_address
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.configs import PushConfig
from clipsteer.sae.io import save_sae
from clipsteer.sae.loading import load_any_sae
from clipsteer.sae.recipe import ObjectiveConfig, TrainerConfig

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class TrainingRecord:
    """What the trainer's run folder says about one SAE (`<run>/config.json`)."""

    run: Path
    trainer: dict[str, Any]
    objective: dict[str, Any]
    store: str | None
    tokens: str | None

    @classmethod
    def find(cls, sae_folder: Path, run: Path | None, sae_name: str) -> TrainingRecord | None:
        run = run or (sae_folder.parent.parent if sae_folder.parent.name == "saes" else None)
        if run is None or not (run / "config.json").is_file():
            return None
        data = json.loads((run / "config.json").read_text())
        recipes = {r.get("name"): r for r in data.get("recipes", []) if isinstance(r, dict)}
        recipe = recipes.get(sae_name) or (next(iter(recipes.values())) if len(recipes) == 1 else None)
        if not isinstance(data.get("trainer"), dict) or recipe is None:
            return None
        extra = data.get("extra") or {}
        return cls(run, data["trainer"], recipe.get("objective") or {}, extra.get("store"), extra.get("tokens"))


def _flag(prefix: str, name: str, value: Any) -> list[str]:
    flag = f"--{prefix}{name.replace('_', '-')}"
    if isinstance(value, bool):
        return [flag if value else f"--{prefix}no-{name.replace('_', '-')}"]
    if isinstance(value, list | tuple):
        return [flag, *map(str, value)]
    return [flag, str(value)]


def _changed_flags(prefix: str, recorded: dict[str, Any], defaults: Any) -> list[str]:
    """Flags for the fields of a recorded config that differ from the dataclass defaults."""
    args: list[str] = []
    for field in dataclasses.fields(defaults):
        if field.name not in recorded:
            continue
        value, default = recorded[field.name], getattr(defaults, field.name)
        if (list(value) if isinstance(value, list | tuple) else value) != (
                list(default) if isinstance(default, list | tuple) else default):
            args += _flag(prefix, field.name, value)
    return args


def train_command(config: SAEConfig, record: TrainingRecord) -> list[str]:
    """The `clipsteer train` arguments that train this one SAE as the run did (same stream and seed)."""
    args = ["--store", str(record.store or "STORE"), "--out", str(record.run), "--tokens",
            str(record.tokens or config.tokens or "all"), "--architecture", config.architecture,
            "--expansion-factor", str(config.d_sae // config.d_in), "--normalization", config.normalization]
    if config.k is not None:
        args += ["--k", str(config.k)]
    return args + _changed_flags("trainer.", record.trainer, TrainerConfig()) + \
        _changed_flags("objective.", record.objective, ObjectiveConfig())


def _metric(value: Any, percent: bool = False, digits: int = 3) -> str:
    if not isinstance(value, int | float):
        return NOT_RECORDED
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}f}"


def model_card(config: SAEConfig, repo_id: str, subfolder: str | None, evaluation: EvalResult | None,
               record: TrainingRecord | None) -> str:
    """README.md for the Hub: YAML front matter, the SAE's facts, metrics and how it was trained."""
    address = f"hf://{repo_id}" + (f"/{subfolder}" if subfolder else "")
    recon = dataclasses.asdict(evaluation.reconstruction) if evaluation is not None else {}
    downstream = evaluation.downstream if evaluation is not None else None
    ce = downstream.ce_recovered_pct if downstream is not None else None
    total_tokens = (record.trainer.get("total_tokens") if record else None)
    rows = [
        ("Model", config.model or NOT_RECORDED), ("Site", config.site or NOT_RECORDED),
        ("Tokens", config.tokens or NOT_RECORDED),
        ("Architecture", config.architecture + (f" (k = {config.k})" if config.k is not None else "")),
        ("Width", f"{config.d_sae} features = {config.expansion_factor:g} × d_in {config.d_in}"),
        ("Input normalisation", config.normalization),
        ("Training tokens", f"{total_tokens:,}" if isinstance(total_tokens, int) else NOT_RECORDED),
        ("Explained variance", _metric(recon.get("explained_variance"))),
        ("L0 (patch tokens / CLS)", f"{_metric(recon.get('l0_patches'), digits=1)} / {_metric(recon.get('l0_cls'), digits=1)}"),
        ("Dead features", _metric(recon.get("dead_fraction"), percent=True)),
        ("CE recovered", f"{ce:.1f}%" if isinstance(ce, int | float) else NOT_RECORDED),
    ]
    lines = ["---", "library_name: clipsteer", "tags:", "- sparse-autoencoder", "- clip", "- interpretability"]
    if config.model and config.model.count("/") == 1 and not config.model.startswith((".", "/")):
        lines.append(f"base_model: {config.model}")
    lines += ["---", "", f"# Sparse autoencoder: {config.site or 'CLIP vision'} of {config.model or 'a CLIP model'}",
              "", "A sparse autoencoder on CLIP's vision transformer, trained with "
              "[clipsteer](https://pypi.org/project/clipsteer/).", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if evaluation is not None:
        lines += ["", f"Metrics from `eval.json` (clipsteer eval on {evaluation.dataset}, {evaluation.n_images} images)."]
    lines += ["", "## Use", "", "```python", "from clipsteer.sae import load_any_sae", "",
              f'sae = load_any_sae("{address}")', "codes = sae.encode(h)          # h [B, T, d_in] at the site above",
              "```", "", "## Training", ""]
    if record is not None:
        lines += ["The command that trains this SAE (rebuilt from the run's `config.json`):", "", "```bash",
                  "clipsteer train " + shlex.join(train_command(config, record)), "```"]
    else:
        lines.append(f"Training command: {NOT_RECORDED} (no training run folder was found for this SAE).")
    return "\n".join(lines) + "\n"


def stage_push_folder(sae_path: Path, out: Path, repo_id: str, subfolder: str | None = None,
                      eval_path: Path | None = None, run: Path | None = None) -> Path:
    """Write the folder that `push` uploads (see module docstring) to `out`, atomically."""
    sae = load_any_sae(sae_path)
    eval_path = eval_path or (sae_path / "eval.json" if sae_path.is_dir() else None)
    evaluation = EvalResult.read(eval_path) if eval_path is not None and eval_path.is_file() else None
    record = TrainingRecord.find(sae_path, run, sae_path.name)
    with atomic_directory(out) as tmp:
        save_sae(sae, tmp / "sae")
        for file in (tmp / "sae").iterdir():
            file.rename(tmp / file.name)
        (tmp / "sae").rmdir()
        if evaluation is not None:
            shutil.copyfile(eval_path, tmp / "eval.json")  # type: ignore[arg-type]
        atomic_write_text(tmp / "README.md", model_card(sae.config, repo_id, subfolder, evaluation, record))
    return out



def push(config: PushConfig) -> Path | str:
    """Stage the folder and upload it; returns the staged folder (dry run) or the repository URL."""
    address = parse_hub_address(f"hf://{config.repo}/{config.subfolder or ''}")
    if config.dry_run is not None:
        folder = stage_push_folder(config.sae, config.dry_run, address.repo_id, address.subfolder, config.eval,
                                   config.run)
        print(f"staged {folder} (not uploaded)")
        return folder
    if hub_offline():
        raise HubError(f"cannot push to {address}: the Hub is disabled (HF_HUB_OFFLINE=1)")
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        folder = stage_push_folder(config.sae, Path(tmp) / "push", address.repo_id, address.subfolder, config.eval,
                                   config.run)
        api = HfApi()
        api.create_repo(address.repo_id, private=config.private, exist_ok=True)
        info = api.upload_folder(repo_id=address.repo_id, folder_path=folder, path_in_repo=address.subfolder or "",
                                 commit_message=f"clipsteer push {config.sae.name}")
    url = str(getattr(info, "commit_url", None) or f"https://huggingface.co/{address.repo_id}")
    print(f"pushed {config.sae} → {address} ({url})")
    return url
