import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertConfig, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from clipsteer.models import Backbone, ImageReadError, Preprocess
from clipsteer.models.loading import CheckpointError
from clipsteer.models.testing import tiny_backbone


def test_round_trip_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    original = tiny_backbone(seed=3)
    loaded = Backbone.from_pretrained(original.save_pretrained(tmp_path / "ckpt"))
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.encode_image(pixels), original.encode_image(pixels))
    torch.testing.assert_close(loaded.encode_text(["a red cat", "water"]), original.encode_text(["a red cat", "water"]))
    assert loaded.preprocess == original.preprocess
    assert loaded.logit_scale == pytest.approx(original.logit_scale)
    assert len(loaded.revision) == 16


def test_vision_only_checkpoint_with_projection(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    model = CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(tmp_path)
    backbone = Backbone.from_pretrained(tmp_path)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(pixel_values=pixels).image_embeds, dim=-1)
    torch.testing.assert_close(backbone.encode_image(pixels), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no text tower"):
        backbone.encode_text(["a cat"])


def test_missing_path_and_unreachable_hub_are_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        Backbone.from_pretrained(tmp_path / "nowhere")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE=1.*hf download .*--local-dir"):
        Backbone.from_pretrained("openai/clip-vit-base-patch32-not-cached")


def test_non_clip_config_is_refused(tmp_path: Path) -> None:
    BertConfig().save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="model_type='bert' is not a CLIP checkpoint"):
        Backbone.from_pretrained(tmp_path)


def test_folder_without_weights_is_refused(tmp_path: Path) -> None:
    tiny_backbone().model.config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="has no weights"):
        Backbone.from_pretrained(tmp_path)


def test_preprocess_matches_transformers_clip_processor() -> None:
    rng = np.random.RandomState(0)
    images = [Image.fromarray((rng.rand(300, 200, 3) * 255).astype("uint8")),
              Image.fromarray((rng.rand(180, 260, 3) * 255).astype("uint8"))]
    reference = CLIPImageProcessor()(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(Preprocess.for_image_size(224)(images), reference, atol=1e-6, rtol=0)


def test_grayscale_and_rgba_images_are_converted() -> None:
    backbone = tiny_backbone()
    gray = Image.fromarray((np.random.RandomState(0).rand(40, 50) * 255).astype("uint8"), mode="L")
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent: composited on white
    pixels = backbone.pixels([gray, rgba])
    assert pixels.shape == (2, 3, 32, 32)
    white = backbone.pixels([Image.new("RGB", (32, 32), (255, 255, 255))])
    torch.testing.assert_close(pixels[1], white[0])
    assert backbone.encode_image(pixels).shape == (2, backbone.embed_dim)


def test_uint8_batches_at_model_size_skip_resampling() -> None:
    batch = (np.random.RandomState(0).rand(3, 32, 32, 3) * 255).astype("uint8")
    pre = Preprocess.for_image_size(32)
    torch.testing.assert_close(pre(batch), pre([Image.fromarray(a) for a in batch]))
    with pytest.raises(ValueError, match=r"uint8 image batch of shape \[B, H, W, 3\]"):
        pre(batch.astype("float32"))


def test_corrupt_image_file_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        tiny_backbone().pixels([bad])
    with pytest.raises(ImageReadError, match="not found.*missing.jpg"):
        tiny_backbone().pixels([tmp_path / "missing.jpg"])


def test_vision_model_without_projection_gives_activations_only(tmp_path: Path) -> None:
    """A CLIPVisionModel folder: captures are HF's hidden states; embeddings refuse (no random projection)."""
    from transformers import CLIPVisionModel

    from clipsteer.models.backbone import MissingProjectionError

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)  # projection_dim: a config default
    model = CLIPVisionModel(config).eval()
    model.save_pretrained(tmp_path)
    backbone = Backbone.from_pretrained(tmp_path)
    assert not backbone.has_projection and type(backbone.model).__name__ == "CLIPVisionModel"
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    torch.testing.assert_close(backbone.capture(pixels, ["blocks.1.resid_post"])["blocks.1.resid_post"], hidden[2])
    for call in (lambda: backbone.encode_image(pixels), lambda: backbone.embed_dim):
        with pytest.raises(MissingProjectionError, match="without a projection head"):
            call()


def test_bin_weights_load_through_the_weights_only_unpickler(tmp_path: Path) -> None:
    original = tiny_backbone(seed=5)
    folder = original.save_pretrained(tmp_path / "ckpt")
    state = {k: v.clone() for k, v in original.model.state_dict().items()}
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(Backbone.from_pretrained(folder).encode_image(pixels), original.encode_image(pixels))


class RunsOnLoad:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pytorch_model_bin_is_refused_never_run(tmp_path: Path) -> None:
    original = tiny_backbone()
    folder = original.save_pretrained(tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    torch.save({**original.model.state_dict(), "logit_scale": RunsOnLoad(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: refused to load.*posix.system"):
        Backbone.from_pretrained(folder)
    assert not marker.exists()
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # control: the payload is live
    assert marker.exists()
