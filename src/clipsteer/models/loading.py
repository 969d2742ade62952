"""Find and load a CLIP checkpoint: a Hugging Face CLIP folder, or an open_clip folder converted at load.

Where from: a local folder; `hf://org/repo[/subfolder]` (or `org/repo`, or open_clip's `hf-hub:org/repo`)
through huggingface_hub's cache, downloading only when online (`HF_HUB_OFFLINE=1` is honoured).
What: `config.json` with model_type `clip` (CLIPModel) or `clip_vision_model` (CLIPVisionModelWithProjection
when the weights hold `visual_projection.weight`, else CLIPVisionModel, which gives activations only:
never a randomly initialised projection); or `open_clip_config.json` + open_clip weights
(`clipsteer.models.open_clip`). `.bin` weights are read only by `clipsteer.torch_files.load_torch_file`
(torch's weights-only unpickler): nothing in a checkpoint is executed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPModel,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerBase,
)

from clipsteer.errors import InputFormatError
from clipsteer.hub import HubError, resolve_hub_path
from clipsteer.models.names import BUILTIN_PREFIX, builtin_dir, resolve_model
from clipsteer.models.open_clip import (
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    OpenCLIPFormatError,
    convert_open_clip,
    is_open_clip_folder,
    model_from_state_dict,
)
from clipsteer.models.preprocess import Preprocess
from clipsteer.torch_files import TorchFileError, load_torch_file

__all__ = ["CheckpointError", "LoadedCLIP", "load_clip", "resolve_checkpoint_dir", "resolve_model"]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


class CheckpointError(InputFormatError):
    """A checkpoint that is missing, unreachable, or not a CLIP model."""


@dataclass
class LoadedCLIP:
    model: CLIPModel | CLIPVisionModelWithProjection | CLIPVisionModel
    tokenizer: PreTrainedTokenizerBase | None
    preprocess: Preprocess
    name: str
    revision: str
    folder: Path


def resolve_checkpoint_dir(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A shipped checkpoint (`clipsteer:<name>`) or local folder as is; `hf://org/repo[/sub]`,
    `hf-hub:org/repo` or `org/repo` through the Hub cache (downloading only when online)."""
    if str(name_or_path).startswith(BUILTIN_PREFIX):
        return builtin_dir(str(name_or_path))
    name = str(name_or_path)
    if name.startswith("hf-hub:"):  # open_clip's spelling of a Hub id
        name = "hf://" + name[len("hf-hub:"):]
    path = Path(name).expanduser()
    if not name.startswith(("hf://", "hf:/")) and path.exists():
        if path.is_file() and path.name in OPEN_CLIP_WEIGHTS + (OPEN_CLIP_CONFIG,):
            return path.parent
        if not path.is_dir():
            raise CheckpointError(f"{path} is a file; expected a folder holding config.json and model weights "
                                  f"(or {OPEN_CLIP_CONFIG} and open_clip weights)")
        return path
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if not name.startswith(("hf://", "hf:/")) and not looks_like_hub_id:
        raise CheckpointError(f"checkpoint folder not found: {path}")
    try:
        return resolve_hub_path(name if name.startswith(("hf://", "hf:/")) else f"hf://{name}", revision=revision)
    except HubError as error:
        raise CheckpointError(str(error)) from error


def checkpoint_fingerprint(folder: Path) -> str:
    """A cheap content fingerprint: config plus size and head/tail bytes of each weight file."""
    config = folder / "config.json" if (folder / "config.json").is_file() else folder / OPEN_CLIP_CONFIG
    digest = hashlib.sha256(config.read_bytes())
    for name in WEIGHT_FILES + OPEN_CLIP_WEIGHTS:
        file = folder / name
        if file.is_file():
            size = file.stat().st_size
            digest.update(f"{name}:{size}".encode())
            with file.open("rb") as fh:
                digest.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                digest.update(fh.read())
    return digest.hexdigest()[:16]


def _weight_names(folder: Path) -> set[str] | None:
    """Tensor names of a HF folder's safetensors weights, read from headers only (None for .bin weights)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text()).get("weight_map", {}))
    single = folder / "model.safetensors"
    if single.is_file():
        with safe_open(single, framework="pt") as handle:
            return set(handle.keys())
    return None


def _bin_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """`pytorch_model.bin` (or its shards) read with the weights-only unpickler."""
    index = folder / "pytorch_model.bin.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
             else ["pytorch_model.bin"])
    state: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            data = load_torch_file(folder / name)
        except TorchFileError as error:
            raise CheckpointError(str(error)) from None
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise CheckpointError(f"{folder / name}: expected a state dict of tensors")
        state.update(data)
    return state


def _check_model_type(config: dict, config_file: Path) -> None:
    if config.get("model_type") not in ("clip", "clip_vision_model"):
        raise CheckpointError(
            f"{config_file}: model_type={config.get('model_type')!r} is not a CLIP checkpoint; expected 'clip' "
            f"(CLIPModel) or 'clip_vision_model' (CLIPVisionModel[WithProjection])"
        )


def _model_class(config: dict, names: set[str]) -> type:
    """CLIPModel, or for a vision tower the class its weights hold (with a projection head or without)."""
    if config.get("model_type") == "clip":
        return CLIPModel
    return CLIPVisionModelWithProjection if "visual_projection.weight" in names else CLIPVisionModel


def load_clip(name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              revision: str | None = None) -> LoadedCLIP:
    folder = resolve_checkpoint_dir(name_or_path, revision)
    config_file = folder / "config.json"
    if not config_file.is_file():
        if is_open_clip_folder(folder):
            return _load_open_clip(folder, name_or_path, device, dtype)
        raise CheckpointError(f"{folder} has no config.json; expected a Hugging Face CLIP checkpoint folder "
                              f"(config.json + weights) or an open_clip one ({OPEN_CLIP_CONFIG} + one of "
                              f"{list(OPEN_CLIP_WEIGHTS)})")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file} is not valid JSON: {err}") from err
    _check_model_type(config, config_file)
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise CheckpointError(f"{folder} has no weights; expected one of {list(WEIGHT_FILES)}")
    names = _weight_names(folder)
    state = _bin_state_dict(folder) if names is None else None
    model_cls = _model_class(config, names if state is None else set(state))
    if state is None:
        model = model_cls.from_pretrained(folder, dtype=dtype)
    else:
        hf_config = AutoConfig.from_pretrained(folder)
        if model_cls is not CLIPModel:
            hf_config = getattr(hf_config, "vision_config", hf_config)
        try:
            model = model_from_state_dict(model_cls, hf_config, state, folder).to(dtype)
        except OpenCLIPFormatError as error:
            raise CheckpointError(str(error)) from None
    model = model.to(device).eval()
    has_tokenizer = model_cls is CLIPModel and any((folder / f).is_file() for f in TOKENIZER_FILES)
    tokenizer = AutoTokenizer.from_pretrained(folder) if has_tokenizer else None
    vision_config = model.config.vision_config if model_cls is CLIPModel else model.config
    image_size = vision_config.image_size
    processor_file = folder / "preprocessor_config.json"
    preprocess = (Preprocess.from_hf_file(processor_file, image_size) if processor_file.is_file()
                  else Preprocess.for_image_size(image_size))
    return LoadedCLIP(model, tokenizer, preprocess, name=str(name_or_path), revision=checkpoint_fingerprint(folder),
                      folder=folder)


def _load_open_clip(folder: Path, name: str | Path, device: str | torch.device, dtype: torch.dtype) -> LoadedCLIP:
    weights = next((folder / f for f in OPEN_CLIP_WEIGHTS if (folder / f).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder}: has {OPEN_CLIP_CONFIG} but no weights; expected one of {list(OPEN_CLIP_WEIGHTS)}")
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(weights)
        else:
            state = load_torch_file(weights)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint
                state = {k.removeprefix("module."): v for k, v in state["state_dict"].items()}
        converted = convert_open_clip(folder, state, dtype)
    except (TorchFileError, OpenCLIPFormatError) as error:
        raise CheckpointError(str(error)) from None
    has_tokenizer = isinstance(converted.model, CLIPModel) and any((folder / f).is_file() for f in TOKENIZER_FILES)
    tokenizer = AutoTokenizer.from_pretrained(folder) if has_tokenizer else None
    return LoadedCLIP(converted.model.to(device), tokenizer, converted.preprocess, name=str(name),
                      revision=checkpoint_fingerprint(folder), folder=folder)
