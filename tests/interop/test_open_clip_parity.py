"""open_clip itself against clipsteer's conversion: a random-weight ViT-B-32 saved by open_clip's own
`save_for_hf` (the Hub layout) loads in clipsteer with the same image embedding, middle residual stream,
text embedding and preprocessing.

Runs where `open_clip` imports (`make test` installs the `interop` extra); skipped, saying so, elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip", reason="open_clip is not installed: pip install -e '.[interop]'")

from clipsteer.models import Backbone  # noqa: E402


class NoTokenizerFiles:
    """open_clip's SimpleTokenizer ships in its package; `save_for_hf` only asks it to write files."""

    def save_pretrained(self, folder: object) -> None:
        pass


@pytest.fixture(scope="module")
def vit_b32(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # perturb every tensor, layer norms included (a fresh init has identity norms)
        for name, param in model.named_parameters():
            if name == "logit_scale":
                continue
            param.add_(torch.randn(param.shape, generator=g) * (0.1 if param.ndim == 1 else param.std().clamp(min=0.01)))
    folder = tmp_path_factory.mktemp("vit_b32")
    config = open_clip.get_model_config("ViT-B-32")
    from open_clip.push_to_hf_hub import save_for_hf

    save_for_hf(model, NoTokenizerFiles(), config, folder, safe_serialization=True)
    return model, folder


def test_files_are_open_clips_hub_layout(vit_b32: tuple[object, Path]) -> None:
    _, folder = vit_b32
    assert sorted(p.name for p in folder.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]


def test_image_embedding_and_middle_residual_match_open_clip(vit_b32: tuple[object, Path]) -> None:
    model, folder = vit_b32
    backbone = Backbone.from_pretrained(folder)
    assert backbone.model.config.vision_config.hidden_act == "gelu"  # ViT-B-32 has quick_gelu false
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    captured: dict[str, torch.Tensor] = {}
    handle = model.visual.transformer.resblocks[6].register_forward_hook(  # type: ignore[attr-defined]
        lambda module, args, output: captured.__setitem__("out", output))
    with torch.no_grad():
        expected = model.encode_image(pixels, normalize=True)  # type: ignore[attr-defined]
    handle.remove()
    middle = captured["out"]
    middle = middle if middle.shape[0] == 2 else middle.transpose(0, 1)  # open_clip may run sequence-first
    embedding_error = (backbone.encode_image(pixels) - expected).abs().max().item()
    site_error = (backbone.capture(pixels, ["blocks.6.resid_post"])["blocks.6.resid_post"] - middle).abs().max().item()
    print(f"open_clip ViT-B-32 vs clipsteer: image embedding maxabs {embedding_error:.2e}, blocks.6.resid_post "
          f"maxabs {site_error:.2e} (scale {middle.abs().max().item():.1f})")
    assert embedding_error <= 1e-5 and site_error <= 1e-5


def test_text_embedding_matches_open_clip(vit_b32: tuple[object, Path]) -> None:
    model, folder = vit_b32
    backbone = Backbone.from_pretrained(folder)
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a water bird", "a written word"])
    with torch.no_grad():
        expected = model.encode_text(tokens, normalize=True)  # type: ignore[attr-defined]
        ours = backbone.model.get_text_features(input_ids=tokens)
    ours = ours if isinstance(ours, torch.Tensor) else ours.pooler_output
    error = (torch.nn.functional.normalize(ours, dim=-1) - expected).abs().max().item()
    print(f"open_clip ViT-B-32 vs clipsteer: text embedding maxabs {error:.2e}")
    assert error <= 1e-5


def test_preprocessing_matches_open_clip(vit_b32: tuple[object, Path]) -> None:
    _, folder = vit_b32
    backbone = Backbone.from_pretrained(folder)
    _, _, transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    rng = np.random.RandomState(0)
    images = [Image.fromarray((rng.rand(300, 260, 3) * 255).astype("uint8")),
              Image.fromarray((rng.rand(200, 333, 3) * 255).astype("uint8"))]
    expected = torch.stack([transform(image) for image in images])
    error = (backbone.pixels(images) - expected).abs().max().item()
    print(f"open_clip preprocessing vs clipsteer: pixels maxabs {error:.2e}")
    assert error <= 1e-5
