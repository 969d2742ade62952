"""Find and load a Hugging Face CLIP checkpoint (local folder first, hub only when reachable)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPModel, CLIPVisionModelWithProjection, PreTrainedTokenizerBase

from clipsteer.errors import InputFormatError, UnsafeFileError
from clipsteer.models.names import BUILTIN_PREFIX, builtin_dir, resolve_model
from clipsteer.models.preprocess import Preprocess

__all__ = ["CheckpointError", "LoadedCLIP", "load_clip", "resolve_checkpoint_dir", "resolve_model"]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


class CheckpointError(InputFormatError):
    """A checkpoint that is missing, unreachable, or not a CLIP model."""


@dataclass
class LoadedCLIP:
    model: CLIPModel | CLIPVisionModelWithProjection
    tokenizer: PreTrainedTokenizerBase | None
    preprocess: Preprocess
    name: str
    revision: str


def resolve_checkpoint_dir(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A shipped checkpoint (`clipsteer:<name>`) or local folder as is; otherwise a hub id through the
    local cache, downloading only when online."""
    if str(name_or_path).startswith(BUILTIN_PREFIX):
        return builtin_dir(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path} is a file; expected a folder holding config.json and model weights")
        return path
    name = str(name_or_path)
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise CheckpointError(f"checkpoint folder not found: {path}")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, revision=revision, local_files_only=offline))
    except Exception as err:  # hub errors come in many types; all mean the same thing to the user here
        raise CheckpointError(
            f"could not load {name!r}: no local folder of that name, and the hub "
            f"{'is disabled (HF_HUB_OFFLINE=1)' if offline else 'is unreachable'} ({type(err).__name__}). "
            f"Download it on a machine with access (`huggingface-cli download {name} --local-dir DIR`), "
            f"copy DIR here and pass its path instead."
        ) from err


def checkpoint_fingerprint(folder: Path) -> str:
    """A cheap content fingerprint: config plus size and head/tail bytes of each weight file."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for name in WEIGHT_FILES:
        file = folder / name
        if file.is_file():
            size = file.stat().st_size
            digest.update(f"{name}:{size}".encode())
            with file.open("rb") as fh:
                digest.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                digest.update(fh.read())
    return digest.hexdigest()[:16]


def load_clip(name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              revision: str | None = None) -> LoadedCLIP:
    folder = resolve_checkpoint_dir(name_or_path, revision)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} has no config.json; expected a Hugging Face CLIP checkpoint folder")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file} is not valid JSON: {err}") from err
    model_type = config.get("model_type")
    if model_type == "clip":
        model_cls: type = CLIPModel
    elif model_type == "clip_vision_model" and config.get("projection_dim"):
        model_cls = CLIPVisionModelWithProjection
    else:
        raise CheckpointError(
            f"{config_file}: model_type={model_type!r} is not a CLIP checkpoint; expected 'clip' "
            f"(CLIPModel) or 'clip_vision_model' with a projection (CLIPVisionModelWithProjection)"
        )
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise CheckpointError(f"{folder} has no weights; expected one of {list(WEIGHT_FILES)}")
    try:
        model = model_cls.from_pretrained(folder, dtype=dtype).to(device).eval()
    except pickle.UnpicklingError:
        raise UnsafeFileError(f"{folder}: refused to load its pickled weights (pytorch_model.bin holds Python objects "
                              "beyond plain tensors, and clipsteer never unpickles them); convert the checkpoint to "
                              "model.safetensors") from None
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{folder}: cannot load the CLIP weights ({first})") from None
    has_tokenizer = model_type == "clip" and any((folder / f).is_file() for f in TOKENIZER_FILES)
    tokenizer = AutoTokenizer.from_pretrained(folder) if has_tokenizer else None
    vision_config = model.config.vision_config if model_type == "clip" else model.config
    image_size = vision_config.image_size
    processor_file = folder / "preprocessor_config.json"
    preprocess = (Preprocess.from_hf_file(processor_file, image_size) if processor_file.is_file()
                  else Preprocess.for_image_size(image_size))
    return LoadedCLIP(model, tokenizer, preprocess, name=str(name_or_path), revision=checkpoint_fingerprint(folder))
