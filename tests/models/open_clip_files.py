"""open_clip checkpoints written in open_clip's own layout, and open_clip's forward written out by hand.

The tensor names and shapes follow open_clip's `VisionTransformer` / `TextTransformer` (nn.MultiheadAttention
with a stacked `in_proj_weight`, `conv1` without bias, `proj` applied as `x @ proj`), and the folder is
what open_clip's `push_to_hf_hub` writes: `open_clip_config.json` = {"model_cfg", "preprocess_cfg"} plus
`open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`). The reference forward uses only those
names, so it checks clipsteer's conversion instead of repeating it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

# open_clip's model_configs/ViT-B-32.json
VIT_B_32: dict[str, Any] = {"embed_dim": 512,
                            "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
                            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                                         "layers": 12}}
TINY: dict[str, Any] = {"embed_dim": 24,
                        "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "patch_size": 8, "head_width": 16},
                        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
DATACOMP_PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                       "interpolation": "bicubic", "resize_mode": "shortest"}


def _block_tensors(prefix: str, width: int, mlp: int, g: torch.Generator) -> dict[str, Tensor]:
    def rand(*shape: int, scale: float = 0.02) -> Tensor:
        return torch.randn(*shape, generator=g) * scale

    return {f"{prefix}.ln_1.weight": 1 + rand(width, scale=0.1), f"{prefix}.ln_1.bias": rand(width, scale=0.1),
            f"{prefix}.attn.in_proj_weight": rand(3 * width, width, scale=width ** -0.5),
            f"{prefix}.attn.in_proj_bias": rand(3 * width, scale=0.1),
            f"{prefix}.attn.out_proj.weight": rand(width, width, scale=width ** -0.5),
            f"{prefix}.attn.out_proj.bias": rand(width, scale=0.1),
            f"{prefix}.ln_2.weight": 1 + rand(width, scale=0.1), f"{prefix}.ln_2.bias": rand(width, scale=0.1),
            f"{prefix}.mlp.c_fc.weight": rand(mlp, width, scale=width ** -0.5), f"{prefix}.mlp.c_fc.bias": rand(mlp, scale=0.1),
            f"{prefix}.mlp.c_proj.weight": rand(width, mlp, scale=mlp ** -0.5), f"{prefix}.mlp.c_proj.bias": rand(width, scale=0.1)}


def random_open_clip_state(model_cfg: dict[str, Any], seed: int = 0, text: bool = True) -> dict[str, Tensor]:
    """Every tensor of an open_clip CLIP with this config, random (all perturbed: no identity layer norms)."""
    g = torch.Generator().manual_seed(seed)
    v = model_cfg["vision_cfg"]
    w, p, size, e = v["width"], v["patch_size"], v["image_size"], model_cfg["embed_dim"]
    n_tokens = (size // p) ** 2 + 1
    state = {"visual.class_embedding": torch.randn(w, generator=g) * w ** -0.5,
             "visual.positional_embedding": torch.randn(n_tokens, w, generator=g) * w ** -0.5,
             "visual.conv1.weight": torch.randn(w, 3, p, p, generator=g) * (3 * p * p) ** -0.5,
             "visual.ln_pre.weight": 1 + 0.1 * torch.randn(w, generator=g), "visual.ln_pre.bias": 0.1 * torch.randn(w, generator=g),
             "visual.ln_post.weight": 1 + 0.1 * torch.randn(w, generator=g), "visual.ln_post.bias": 0.1 * torch.randn(w, generator=g),
             "visual.proj": torch.randn(w, e, generator=g) * w ** -0.5}
    for i in range(v["layers"]):
        state |= _block_tensors(f"visual.transformer.resblocks.{i}", w, int(w * v.get("mlp_ratio", 4.0)), g)
    if text:
        t = model_cfg["text_cfg"]
        tw = t["width"]
        state |= {"token_embedding.weight": torch.randn(t["vocab_size"], tw, generator=g) * 0.02,
                  "positional_embedding": torch.randn(t["context_length"], tw, generator=g) * 0.01,
                  "ln_final.weight": 1 + 0.1 * torch.randn(tw, generator=g), "ln_final.bias": 0.1 * torch.randn(tw, generator=g),
                  "text_projection": torch.randn(tw, e, generator=g) * tw ** -0.5,
                  "logit_scale": torch.tensor(4.6052)}
        for i in range(t["layers"]):
            state |= _block_tensors(f"transformer.resblocks.{i}", tw, tw * 4, g)
    return state


def write_open_clip_folder(folder: Path, state: dict[str, Tensor], model_cfg: dict[str, Any],
                           preprocess_cfg: dict[str, Any] | None = None, as_bin: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    size = model_cfg["vision_cfg"]["image_size"]
    config = {"model_cfg": model_cfg, "preprocess_cfg": {**DATACOMP_PREPROCESS, "size": size, **(preprocess_cfg or {})}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    if as_bin:
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "open_clip_model.safetensors")
    return folder


def _act(x: Tensor, quick_gelu: bool) -> Tensor:
    return x * torch.sigmoid(1.702 * x) if quick_gelu else F.gelu(x)


def _block(x: Tensor, s: dict[str, Tensor], prefix: str, heads: int, quick_gelu: bool,
           mask: Tensor | None = None) -> Tensor:
    """open_clip ResidualAttentionBlock: x + attn(ln_1(x)); x + mlp(ln_2(x)); x is [B, T, w]."""
    w = x.shape[-1]
    h = F.layer_norm(x, (w,), s[f"{prefix}.ln_1.weight"], s[f"{prefix}.ln_1.bias"], eps=1e-5)
    attn, _ = F.multi_head_attention_forward(
        h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), w, heads, s[f"{prefix}.attn.in_proj_weight"],
        s[f"{prefix}.attn.in_proj_bias"], None, None, False, 0.0, s[f"{prefix}.attn.out_proj.weight"],
        s[f"{prefix}.attn.out_proj.bias"], training=False, need_weights=False, attn_mask=mask)
    x = x + attn.transpose(0, 1)
    h = F.layer_norm(x, (w,), s[f"{prefix}.ln_2.weight"], s[f"{prefix}.ln_2.bias"], eps=1e-5)
    h = F.linear(_act(F.linear(h, s[f"{prefix}.mlp.c_fc.weight"], s[f"{prefix}.mlp.c_fc.bias"]), quick_gelu),
                 s[f"{prefix}.mlp.c_proj.weight"], s[f"{prefix}.mlp.c_proj.bias"])
    return x + h


@torch.no_grad()
def reference_image(state: dict[str, Tensor], model_cfg: dict[str, Any], pixels: Tensor,
                    capture_block: int) -> tuple[Tensor, Tensor]:
    """open_clip's `encode_image` (L2-normalised [B, e]) and the output of resblock `capture_block` [B, T, w]."""
    v = model_cfg["vision_cfg"]
    w, quick = v["width"], model_cfg.get("quick_gelu", False)
    heads = w // v.get("head_width", 64)
    x = F.conv2d(pixels, state["visual.conv1.weight"], stride=v["patch_size"]).flatten(2).transpose(1, 2)
    cls = state["visual.class_embedding"].expand(x.shape[0], 1, w)
    x = torch.cat([cls, x], dim=1) + state["visual.positional_embedding"]
    x = F.layer_norm(x, (w,), state["visual.ln_pre.weight"], state["visual.ln_pre.bias"], eps=1e-5)
    captured = x
    for i in range(v["layers"]):
        x = _block(x, state, f"visual.transformer.resblocks.{i}", heads, quick)
        if i == capture_block:
            captured = x
    pooled = F.layer_norm(x[:, 0], (w,), state["visual.ln_post.weight"], state["visual.ln_post.bias"], eps=1e-5)
    return F.normalize(pooled @ state["visual.proj"], dim=-1), captured


@torch.no_grad()
def reference_text(state: dict[str, Tensor], model_cfg: dict[str, Any], tokens: Tensor) -> Tensor:
    """open_clip's `encode_text` for token ids [N, ctx] (EOT = the largest id), L2-normalised [N, e]."""
    t = model_cfg["text_cfg"]
    w, ctx = t["width"], tokens.shape[1]
    x = state["token_embedding.weight"][tokens] + state["positional_embedding"][:ctx]
    mask = torch.full((ctx, ctx), float("-inf")).triu(1)
    for i in range(t["layers"]):
        x = _block(x, state, f"transformer.resblocks.{i}", t["heads"], model_cfg.get("quick_gelu", False), mask)
    x = F.layer_norm(x, (w,), state["ln_final.weight"], state["ln_final.bias"], eps=1e-5)
    pooled = x[torch.arange(len(tokens)), tokens.argmax(dim=-1)]
    return F.normalize(pooled @ state["text_projection"], dim=-1)
