"""open_clip checkpoints load as HF CLIP, with the same function as open_clip's forward."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from open_clip_files import (
    TINY,
    VIT_B_32,
    random_open_clip_state,
    reference_image,
    reference_text,
    write_open_clip_folder,
)
from PIL import Image

from clipsteer.models import Backbone
from clipsteer.models.loading import CheckpointError


def text_tokens() -> torch.Tensor:
    """Two prompts in open_clip's token layout: SOT, words, EOT (49407, the largest id), zero padding."""
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[0, :5] = torch.tensor([49406, 320, 1125, 539, 49407])
    tokens[1, :3] = torch.tensor([49406, 2368, 49407])
    return tokens


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_tiny_open_clip_matches_open_clips_forward(tmp_path: Path, quick_gelu: bool) -> None:
    model_cfg = {**TINY, "quick_gelu": quick_gelu}
    state = random_open_clip_state(model_cfg, seed=1)
    backbone = Backbone.from_pretrained(write_open_clip_folder(tmp_path / "oc", state, model_cfg))
    assert backbone.model.config.vision_config.hidden_act == ("quick_gelu" if quick_gelu else "gelu")
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected, middle = reference_image(state, model_cfg, pixels, capture_block=1)
    assert (backbone.encode_image(pixels) - expected).abs().max() <= 1e-5
    assert (backbone.capture(pixels, ["blocks.1.resid_post"])["blocks.1.resid_post"] - middle).abs().max() <= 1e-5
    with torch.no_grad():
        text = backbone.model.get_text_features(input_ids=text_tokens())
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    assert (F.normalize(text, dim=-1) - reference_text(state, model_cfg, text_tokens())).abs().max() <= 1e-5
    assert backbone.logit_scale == pytest.approx(100.0, rel=1e-4)


def test_the_activation_comes_from_the_config(tmp_path: Path) -> None:
    """A GELU checkpoint read as quick_gelu (what a converter assuming OpenAI's models does) is measurably off."""
    state = random_open_clip_state(TINY, seed=2)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    right, _ = reference_image(state, TINY, pixels, capture_block=0)
    wrong, _ = reference_image(state, {**TINY, "quick_gelu": True}, pixels, capture_block=0)
    backbone = Backbone.from_pretrained(write_open_clip_folder(tmp_path / "oc", state, TINY))
    got = backbone.encode_image(pixels)
    assert (got - right).abs().max() <= 1e-5 < (got - wrong).abs().max()


@pytest.mark.slow
def test_random_vit_b32_parity(tmp_path: Path) -> None:
    """ViT-B-32 (open_clip's own config) in open_clip's layout: image embedding and blocks.6.resid_post."""
    state = random_open_clip_state(VIT_B_32, seed=0, text=False)
    backbone = Backbone.from_pretrained(write_open_clip_folder(tmp_path / "b32", state, VIT_B_32))
    assert (backbone.n_layers, backbone.d_model, backbone.n_tokens, backbone.embed_dim) == (12, 768, 50, 512)
    assert not backbone.has_text
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    expected, middle = reference_image(state, VIT_B_32, pixels, capture_block=6)
    embedding_error = (backbone.encode_image(pixels) - expected).abs().max().item()
    site_error = (backbone.capture(pixels, ["blocks.6.resid_post"])["blocks.6.resid_post"] - middle).abs().max().item()
    print(f"ViT-B-32 parity: image embedding maxabs {embedding_error:.2e}, blocks.6.resid_post maxabs "
          f"{site_error:.2e} (scale {middle.abs().max().item():.1f})")
    assert embedding_error <= 1e-5 and site_error <= 1e-5


def test_preprocessing_comes_from_the_open_clip_config(tmp_path: Path) -> None:
    state = random_open_clip_state(TINY, seed=3, text=False)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    folder = write_open_clip_folder(tmp_path / "oc", state, TINY,
                                    {"mean": mean, "std": std, "interpolation": "bilinear"})
    preprocess = Backbone.from_pretrained(folder).preprocess
    assert preprocess.mean == tuple(mean) and preprocess.std == tuple(std)
    assert preprocess.resample == Image.Resampling.BILINEAR and preprocess.crop_size == 32
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["preprocess_cfg"]["resize_mode"] = "squash"
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="resize_mode='squash' is not supported"):
        Backbone.from_pretrained(folder)


def test_bin_weights_and_the_weights_file_path(tmp_path: Path) -> None:
    state = random_open_clip_state(TINY, seed=4)
    folder = write_open_clip_folder(tmp_path / "oc", state, TINY, as_bin=True)
    pixels = torch.randn(1, 3, 32, 32)
    expected, _ = reference_image(state, TINY, pixels, capture_block=0)
    backbone = Backbone.from_pretrained(folder / "open_clip_pytorch_model.bin")
    assert (backbone.encode_image(pixels) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(("change", "message"), [
    ({"ls_init_value": 1e-5}, r"vision_cfg.ls_init_value=1e-05 is not supported"),
    ({"timm_model_name": "vit_base_patch16_224"}, "vision_cfg.timm_model_name"),
    ({"attentional_pool": True}, "vision_cfg.attentional_pool=True"),
])
def test_unsupported_towers_are_refused_by_name(tmp_path: Path, change: dict, message: str) -> None:
    model_cfg = {**TINY, "vision_cfg": {**TINY["vision_cfg"], **change}}
    folder = write_open_clip_folder(tmp_path / "oc", random_open_clip_state(TINY, text=False), model_cfg)
    with pytest.raises(CheckpointError, match=message):
        Backbone.from_pretrained(folder)


def test_missing_tensor_and_missing_weights_are_explained(tmp_path: Path) -> None:
    state = random_open_clip_state(TINY, text=False)
    del state["visual.transformer.resblocks.2.attn.in_proj_bias"]
    folder = write_open_clip_folder(tmp_path / "oc", state, TINY)
    with pytest.raises(CheckpointError, match=r"missing tensor 'visual.transformer.resblocks.2.attn.in_proj_bias'"):
        Backbone.from_pretrained(folder)
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="open_clip_config.json but no weights"):
        Backbone.from_pretrained(folder)
    (folder / "open_clip_config.json").unlink()
    with pytest.raises(CheckpointError, match="or an open_clip one"):
        Backbone.from_pretrained(folder)


class RunsOnLoad:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_malicious_open_clip_bin_is_refused_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    state = random_open_clip_state(TINY, text=False)
    folder = write_open_clip_folder(tmp_path / "oc", {**state, "visual.proj": RunsOnLoad(marker)}, TINY,  # type: ignore[dict-item]
                                    as_bin=True)
    with pytest.raises(CheckpointError, match=r"open_clip_pytorch_model.bin: refused to load.*posix.system"):
        Backbone.from_pretrained(folder)
    assert not marker.exists()
    torch.load(folder / "open_clip_pytorch_model.bin", weights_only=False)  # control: the payload is live
    assert marker.exists()
