"""open_clip checkpoints converted to the Hugging Face CLIP architecture at load time.

An open_clip folder (what open_clip pushes to the Hub) holds `open_clip_config.json`
(`{"model_cfg": {...}, "preprocess_cfg": {...}}`) and `open_clip_model.safetensors` or
`open_clip_pytorch_model.bin`. Its ViT is the same function as HF's `CLIPModel`, with other names:

    open_clip (visual.* / text tower at top level)      HF CLIP
    visual.conv1.weight                                 vision_model.embeddings.patch_embedding.weight
    visual.class_embedding / positional_embedding       vision_model.embeddings.class_embedding / position_embedding.weight
    visual.ln_pre / ln_post                             vision_model.pre_layrnorm / post_layernorm
    *.transformer.resblocks.{i}.ln_1 / ln_2             *.encoder.layers.{i}.layer_norm1 / layer_norm2
    *.attn.in_proj_weight [3w, w] (q; k; v stacked)     *.self_attn.{q,k,v}_proj.weight (and biases)
    *.attn.out_proj                                     *.self_attn.out_proj
    *.mlp.c_fc / c_proj                                 *.mlp.fc1 / fc2
    visual.proj [w, e] (x @ proj)                       visual_projection.weight [e, w] (= proj.T)
    token_embedding / positional_embedding / ln_final   text_model.embeddings.* / final_layer_norm
    text_projection [w, e]                              text_projection.weight (= text_projection.T)
    logit_scale                                         logit_scale

The MLP activation comes from the config, never assumed: open_clip's `quick_gelu` flag (default false:
exact GELU, as in the DataComp and LAION models) → HF `hidden_act` "quick_gelu" or "gelu". A converter
that assumes quick_gelu (OpenAI's models) silently shifts a GELU model's embeddings. Layer norms use
eps 1e-5 on both sides. Preprocessing comes from `preprocess_cfg` (mean, std, interpolation; resize of the
shortest side then a centre crop, open_clip's default `resize_mode`). Towers with features HF CLIP does not
have (layer scale, attentional pooling, timm or HF text towers, other pooling) are refused by name. A text
tower becomes HF's text model when present; with no HF tokenizer files beside the weights the Backbone has
no tokenizer (encode_text refuses), since open_clip's own tokenizer ships inside its package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from clipsteer.models.preprocess import CLIP_MEAN, CLIP_STD, Preprocess

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
EOT_TOKEN_ID, SOT_TOKEN_ID = 49407, 49406  # open_clip's tokenizer: end/start of text (argmax pooling finds EOT)
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

# open_clip config keys whose non-default values change the function (value: the default that is supported).
_VISION_DEFAULTS: dict[str, Any] = {
    "ls_init_value": None, "attentional_pool": False, "attn_pooler_queries": None, "no_ln_pre": False,
    "pool_type": "tok", "final_ln_after_pool": False, "output_tokens": False, "timm_model_name": None,
    "pos_embed_type": "learnable", "act_kwargs": None, "norm_kwargs": None, "block_type": None,
    "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "global_average_pool": False,
}
_TEXT_DEFAULTS: dict[str, Any] = {
    "ls_init_value": None, "hf_model_name": None, "embed_cls": False, "pool_type": "argmax", "proj_bias": False,
    "no_causal_mask": False, "act_kwargs": None, "norm_kwargs": None, "output_tokens": False,
    "block_type": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False,
}


class OpenCLIPFormatError(ValueError):
    """An open_clip checkpoint that cannot be converted (names the file and the field)."""


@dataclass
class ConvertedCLIP:
    """An open_clip checkpoint as HF CLIP: `model` (with converted weights) and `preprocess`."""

    model: CLIPModel | CLIPVisionModelWithProjection
    preprocess: Preprocess


def is_open_clip_folder(folder: Path) -> bool:
    return (folder / OPEN_CLIP_CONFIG).is_file()


def _check_supported(cfg: dict[str, Any], defaults: dict[str, Any], tower: str, where: Path) -> None:
    for key, default in defaults.items():
        value = cfg.get(key, default)
        if value not in (default, None) and not (value is False and default is None):
            raise OpenCLIPFormatError(f"{where}: model_cfg.{tower}.{key}={value!r} is not supported (HF CLIP has no "
                                      f"equivalent); expected {default!r}")


def hf_configs(model_cfg: dict[str, Any], where: Path, with_text: bool) -> CLIPConfig | CLIPVisionConfig:
    """HF config for an open_clip `model_cfg` (CLIPConfig with both towers, or a vision config)."""
    vision = model_cfg.get("vision_cfg")
    if not isinstance(vision, dict) or "embed_dim" not in model_cfg:
        raise OpenCLIPFormatError(f"{where}: model_cfg needs 'embed_dim' and a 'vision_cfg' object")
    _check_supported(vision, _VISION_DEFAULTS, "vision_cfg", where)
    act = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    width = int(vision.get("width", 768))
    head_width = int(vision.get("head_width", 64))
    if width % head_width:
        raise OpenCLIPFormatError(f"{where}: vision_cfg.width={width} is not a multiple of head_width={head_width}")
    image_size = vision.get("image_size", 224)
    patch_size = vision.get("patch_size", 16)
    if isinstance(image_size, list | tuple):
        if len(set(image_size)) != 1:
            raise OpenCLIPFormatError(f"{where}: vision_cfg.image_size={image_size}: only square images are supported")
        image_size = image_size[0]
    vision_config = CLIPVisionConfig(
        hidden_size=width, intermediate_size=int(width * vision.get("mlp_ratio", 4.0)),
        num_hidden_layers=int(vision.get("layers", 12)), num_attention_heads=width // head_width,
        image_size=int(image_size), patch_size=int(patch_size), hidden_act=act, layer_norm_eps=1e-5,
        projection_dim=int(model_cfg["embed_dim"]))
    if not with_text:
        return vision_config
    text = model_cfg.get("text_cfg") or {}
    _check_supported(text, _TEXT_DEFAULTS, "text_cfg", where)
    text_width = int(text.get("width", 512))
    text_config = CLIPTextConfig(
        vocab_size=int(text.get("vocab_size", 49408)), hidden_size=text_width,
        intermediate_size=int(text_width * text.get("mlp_ratio", 4.0)), num_hidden_layers=int(text.get("layers", 12)),
        num_attention_heads=int(text.get("heads", 8)), max_position_embeddings=int(text.get("context_length", 77)),
        hidden_act=act, layer_norm_eps=1e-5, projection_dim=int(model_cfg["embed_dim"]),
        bos_token_id=SOT_TOKEN_ID, eos_token_id=EOT_TOKEN_ID, pad_token_id=0)
    return CLIPConfig(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(),
                      projection_dim=int(model_cfg["embed_dim"]))


def _blocks(state: dict[str, Tensor], source: str, target: str, n_layers: int, where: Path) -> dict[str, Tensor]:
    """Transformer blocks `{source}.{i}.*` (open_clip) → `{target}.{i}.*` (HF)."""
    out: dict[str, Tensor] = {}
    for i in range(n_layers):
        src, dst = f"{source}.{i}", f"{target}.{i}"
        in_proj_w, in_proj_b = _take(state, f"{src}.attn.in_proj_weight", where), _take(state, f"{src}.attn.in_proj_bias", where)
        for name, w, b in zip(("q", "k", "v"), in_proj_w.chunk(3, dim=0), in_proj_b.chunk(3, dim=0), strict=True):
            out[f"{dst}.self_attn.{name}_proj.weight"], out[f"{dst}.self_attn.{name}_proj.bias"] = w, b
        for ours, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            for param in ("weight", "bias"):
                out[f"{dst}.{ours}.{param}"] = _take(state, f"{src}.{theirs}.{param}", where)
    return out


def _take(state: dict[str, Tensor], key: str, where: Path) -> Tensor:
    if key not in state:
        raise OpenCLIPFormatError(f"{where}: missing tensor {key!r} (open_clip ViT layout)")
    return state.pop(key)


def convert_state_dict(state: dict[str, Tensor], config: CLIPConfig | CLIPVisionConfig,
                       where: Path) -> dict[str, Tensor]:
    """open_clip tensor names → HF CLIP names (see module docstring); leftover open_clip tensors are refused."""
    state = dict(state)
    vision_cfg = config.vision_config if isinstance(config, CLIPConfig) else config
    out = {
        "vision_model.embeddings.patch_embedding.weight": _take(state, "visual.conv1.weight", where),
        "vision_model.embeddings.class_embedding": _take(state, "visual.class_embedding", where),
        "vision_model.embeddings.position_embedding.weight": _take(state, "visual.positional_embedding", where),
        "visual_projection.weight": _take(state, "visual.proj", where).T.contiguous(),
    }
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for param in ("weight", "bias"):
            out[f"vision_model.{ours}.{param}"] = _take(state, f"visual.{theirs}.{param}", where)
    out |= _blocks(state, "visual.transformer.resblocks", "vision_model.encoder.layers",
                   vision_cfg.num_hidden_layers, where)
    if isinstance(config, CLIPConfig):
        prefix = text_prefix(state)
        out["text_model.embeddings.token_embedding.weight"] = _take(state, f"{prefix}token_embedding.weight", where)
        out["text_model.embeddings.position_embedding.weight"] = _take(state, f"{prefix}positional_embedding", where)
        for param in ("weight", "bias"):
            out[f"text_model.final_layer_norm.{param}"] = _take(state, f"{prefix}ln_final.{param}", where)
        out |= _blocks(state, f"{prefix}transformer.resblocks", "text_model.encoder.layers",
                       config.text_config.num_hidden_layers, where)
        if f"{prefix}text_projection.weight" in state:  # open_clip's proj_type="linear" (an nn.Linear)
            out["text_projection.weight"] = _take(state, f"{prefix}text_projection.weight", where)
        else:
            out["text_projection.weight"] = _take(state, f"{prefix}text_projection", where).T.contiguous()
        out["logit_scale"] = _take(state, "logit_scale", where).reshape(())
        state.pop(f"{prefix}attn_mask", None)  # the causal mask, rebuilt by HF
    else:
        state = {k: v for k, v in state.items() if k.startswith("visual.")}  # the text tower is not used
    if state:
        raise OpenCLIPFormatError(f"{where}: tensors {sorted(state)[:8]} have no HF CLIP equivalent; expected a "
                                  "standard open_clip ViT")
    return out


def text_prefix(state: dict[str, Tensor]) -> str:
    """'' for open_clip's CLIP (text tower at top level), 'text.' for CustomTextCLIP."""
    return "text." if "text.token_embedding.weight" in state else ""


def has_text_tower(state: dict[str, Tensor]) -> bool:
    return f"{text_prefix(state)}token_embedding.weight" in state


def preprocess_from_config(preprocess_cfg: dict[str, Any], image_size: int, where: Path) -> Preprocess:
    """open_clip's `preprocess_cfg` as clipsteer's Preprocess (resize shortest side, centre crop, normalise)."""
    size = preprocess_cfg.get("size", image_size)
    size = size[0] if isinstance(size, list | tuple) and len(set(size)) == 1 else size
    if size != image_size:
        raise OpenCLIPFormatError(f"{where}: preprocess_cfg.size={size!r} differs from vision_cfg.image_size={image_size}")
    mode = preprocess_cfg.get("resize_mode", "shortest")
    if mode != "shortest":
        raise OpenCLIPFormatError(f"{where}: preprocess_cfg.resize_mode={mode!r} is not supported; expected 'shortest'")
    interpolation = preprocess_cfg.get("interpolation", "bicubic")
    if interpolation not in _RESAMPLE:
        raise OpenCLIPFormatError(f"{where}: preprocess_cfg.interpolation={interpolation!r} is not supported; "
                                  f"expected one of {sorted(_RESAMPLE)}")
    return Preprocess(crop_size=image_size, resize_shortest=image_size,
                      mean=tuple(preprocess_cfg.get("mean", CLIP_MEAN)),  # type: ignore[arg-type]
                      std=tuple(preprocess_cfg.get("std", CLIP_STD)),  # type: ignore[arg-type]
                      resample=_RESAMPLE[interpolation])


def read_open_clip_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_cfg, preprocess_cfg) from `open_clip_config.json`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise OpenCLIPFormatError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_cfg"), dict):
        raise OpenCLIPFormatError(f"{path}: expected an object with 'model_cfg' (and 'preprocess_cfg'), as open_clip "
                                  "writes it")
    return data["model_cfg"], data.get("preprocess_cfg") or {}


def convert_open_clip(folder: Path, state: dict[str, Tensor], dtype: torch.dtype = torch.float32) -> ConvertedCLIP:
    """Build the HF CLIP model equal to the open_clip checkpoint in `folder` from its tensors `state`."""
    config_path = folder / OPEN_CLIP_CONFIG
    model_cfg, preprocess_cfg = read_open_clip_config(config_path)
    config = hf_configs(model_cfg, config_path, with_text=has_text_tower(state))
    converted = convert_state_dict(state, config, config_path)
    model_cls = CLIPModel if isinstance(config, CLIPConfig) else CLIPVisionModelWithProjection
    model = model_from_state_dict(model_cls, config, converted, config_path).to(dtype).eval()
    vision_cfg = config.vision_config if isinstance(config, CLIPConfig) else config
    return ConvertedCLIP(model, preprocess_from_config(preprocess_cfg, vision_cfg.image_size, config_path))


def model_from_state_dict(model_cls: type, config: Any, state: dict[str, Tensor], where: Path) -> Any:
    """`model_cls(config)` with every parameter from `state` (a missing or mis-shaped one is an error)."""
    model = model_cls(config)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.endswith("position_ids"))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise OpenCLIPFormatError(f"{where}: the weights do not fit {model_cls.__name__}: missing {missing[:8]}, "
                                  f"unexpected {unexpected[:8]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise OpenCLIPFormatError(f"{where}: {key} has shape {tuple(value.shape)}, the config implies "
                                      f"{tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=False)
    return model
