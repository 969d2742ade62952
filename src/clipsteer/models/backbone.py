"""Backbone: one CLIP model with named hook sites, capture, interventions and resumable forwards.

Interventions and captures are PyTorch hooks on the Hugging Face modules themselves, so they apply
to every forward: ours (capture / encode_image / encode_from) and the model's own
`get_image_features`. Our forward drives the block loop explicitly, which gives early exit
(`capture` stops after the deepest requested block) and resumption (`encode_from`) for free.

Token layout of the vision residual stream: index 0 is CLS, then `grid × grid` patches row-major.
Text-tower sites (`text.blocks.{l}.…`) are hooked the same way: `capture_text` reads them for a batch of
captions, and `intervene` on a text site edits every text forward (`encode_text`, zero-shot heads).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as module_globals
from transformers import CLIPModel, CLIPVisionModel, CLIPVisionModelWithProjection, PreTrainedTokenizerBase

from clipsteer.models.loading import load_clip
from clipsteer.models.preprocess import ImageLike, Preprocess
from clipsteer.models.sites import Site, TokenSelection, parse_site, select_tokens

SiteFn = Callable[[Tensor], Tensor]  # [B, T, d] -> [B, T, d]



class MissingProjectionError(ValueError):
    """An image embedding was asked of a vision tower that has no projection head (a `CLIPVisionModel`)."""


class Backbone:
    """Wraps a HF `CLIPModel`, or a vision-only `CLIPVisionModelWithProjection` / `CLIPVisionModel`.

    A `CLIPVisionModel` has no projection head: it serves activations (capture, interventions, harvesting,
    SAE training) but image embeddings, zero-shot and steering refuse with `MissingProjectionError`.
    """

    def __init__(self, model: CLIPModel | CLIPVisionModelWithProjection | CLIPVisionModel,
                 tokenizer: PreTrainedTokenizerBase | None,
                 preprocess: Preprocess, name: str = "clip", revision: str = "unknown", model_dir: Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.name = name
        self.revision = revision
        self.model_dir = model_dir  # the checkpoint folder (None: built in memory); datasets match themselves to it
        self.vision = getattr(model, "vision_model", model)  # transformers 5: CLIPVisionModel is the tower itself
        self.blocks: nn.ModuleList = self.vision.encoder.layers
        vision_config = self.vision.config
        self.n_layers: int = vision_config.num_hidden_layers
        self.d_model: int = vision_config.hidden_size
        self.image_size: int = vision_config.image_size
        self.grid: int = vision_config.image_size // vision_config.patch_size
        self.n_tokens: int = 1 + self.grid**2
        self.projection: nn.Linear | None = getattr(model, "visual_projection", None)
        self.text_blocks: nn.ModuleList | None = model.text_model.encoder.layers if self.has_text else None
        self.n_text_layers: int | None = len(self.text_blocks) if self.text_blocks is not None else None
        assert preprocess.crop_size == self.image_size, "preprocessing must produce the model's input size"

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, revision: str | None = None) -> Backbone:
        loaded = load_clip(name_or_path, device=device, dtype=dtype, revision=revision)
        return cls(loaded.model, loaded.tokenizer, loaded.preprocess, loaded.name, loaded.revision, loaded.folder)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a Hugging Face folder (weights, tokenizer, preprocessor_config.json) that from_pretrained reads."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(self.preprocess.to_hf_dict(), indent=2))
        return folder

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def has_projection(self) -> bool:
        return self.projection is not None

    @property
    def embed_dim(self) -> int:
        """Width of the image/text embedding (the projection's output)."""
        return self._projection().out_features

    def _projection(self) -> nn.Linear:
        if self.projection is None:
            raise MissingProjectionError(
                f"{self.name}: this checkpoint is a CLIPVisionModel without a projection head "
                "(visual_projection), so it gives activations (capture, harvest, SAE training) but no image "
                "embeddings, zero-shot or steering; load a CLIPModel or CLIPVisionModelWithProjection checkpoint "
                "for those")
        return self.projection

    @property
    def has_text(self) -> bool:
        return isinstance(self.model, CLIPModel)

    @property
    def logit_scale(self) -> float:
        if not self.has_text:
            return 100.0  # CLIP's trained value; vision-only checkpoints do not carry it
        return float(self.model.logit_scale.detach().exp().clamp(max=100.0))

    def site(self, site: str | Site) -> Site:
        """Parse and validate a site name for this model (unknown sites list the valid ones)."""
        return parse_site(site, self.n_layers, self.n_text_layers)

    # ------------------------------------------------------------------ images
    def pixels(self, images: Sequence[ImageLike] | np.ndarray | Tensor) -> Tensor:
        """PIL images / file paths / a uint8 [B, H, W, 3] batch → model-ready [B, 3, S, S] on the model's device."""
        return self.preprocess(images).to(self.device, self.dtype)

    def _check_pixels(self, pixels: Tensor) -> Tensor:
        expected = (3, self.image_size, self.image_size)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
            raise ValueError(f"expected pixels [B, {', '.join(map(str, expected))}], got {tuple(pixels.shape)}; "
                             f"use Backbone.pixels(images) to preprocess")
        return pixels.to(self.device, self.dtype)

    # ------------------------------------------------------------------ forward pieces
    def _embed(self, pixels: Tensor) -> Tensor:
        """[B, 3, S, S] → resid_pre of block 0, [B, T, d]."""
        return self.vision.pre_layrnorm(self.vision.embeddings(self._check_pixels(pixels)))

    def _run_blocks(self, hidden: Tensor, start: int, stop: int) -> Tensor:
        for block in self.blocks[start:stop]:
            hidden = block(hidden, None)
        return hidden

    def _head(self, cls_row: Tensor) -> Tensor:
        """The final residual's CLS row [B, d] → L2-normalised image embedding [B, embed_dim]."""
        return F.normalize(self._projection()(self.vision.post_layernorm(cls_row)), dim=-1)

    def _embed_from(self, hidden: Tensor, start: int) -> Tensor:
        """Residual [B, T, d] entering block `start` → image embeddings [B, embed_dim].

        Only the CLS row of the last block's output reaches the embedding, so that block computes keys and
        values for every token but the query, attention output and MLP for the CLS row alone (≈ 1/6 of its
        arithmetic at T = 50) — unless a hook sits on it, which must then see every token.
        """
        if start >= self.n_layers or _has_hooks(self.blocks[-1]):
            return self._head(self._run_blocks(hidden, start, self.n_layers)[:, 0])
        return self._head(_cls_row_of_block(self.blocks[-1], self._run_blocks(hidden, start, self.n_layers - 1)))

    @torch.no_grad()
    def encode_image(self, pixels: Tensor, images_per_batch: int | None = None) -> Tensor:
        """[B, 3, S, S] → normalised image embeddings [B, embed_dim] (interventions apply).

        With `images_per_batch`, the images go through in chunks of that many (bounded memory, same result).
        """
        step = images_per_batch or len(pixels)
        return torch.cat([self._embed_from(self._embed(pixels[i:i + step]), 0) for i in range(0, len(pixels), step)])

    @torch.no_grad()
    def encode_from(self, site: str | Site, hidden: Tensor) -> Tensor:
        """Resume the forward from a residual site: hidden [B, T, d] at `site` → embeddings [B, embed_dim].

        Hooks at later sites still apply; the resumed site's own hooks do not (its value is given).
        """
        site = self.site(site)
        if site.tower == "text":
            raise ValueError(f"encode_from resumes the vision forward; {site.name!r} is a text-tower site")
        if site.kind not in ("resid_pre", "resid_post"):
            raise ValueError(f"encode_from needs a residual-stream site, got {site.name!r}; an additive edit "
                             f"of blocks.{site.layer}.mlp_out equals the same edit of blocks.{site.layer}.resid_post")
        if hidden.ndim != 3 or tuple(hidden.shape[1:]) != (self.n_tokens, self.d_model):
            raise ValueError(f"expected hidden [B, {self.n_tokens}, {self.d_model}] at {site.name}, "
                             f"got {tuple(hidden.shape)}")
        start = site.layer if site.kind == "resid_pre" else site.layer + 1
        return self._embed_from(hidden.to(self.device, self.dtype), start)

    @torch.no_grad()
    def capture(self, pixels: Tensor, sites: Sequence[str | Site],
                tokens: TokenSelection = "all") -> dict[str, Tensor]:
        """Activations at several sites from one forward that stops after the deepest one.

        Returns {site name: Tensor[B, T', d]} with T' set by `tokens`; keys use canonical names.
        """
        parsed = [self.site(s) for s in sites]
        if not parsed:
            raise ValueError("capture needs at least one site")
        if any(s.tower == "text" for s in parsed):
            raise ValueError(f"capture reads vision sites; use capture_text for {[s.name for s in parsed]}")
        captured: dict[str, Tensor] = {}

        def record(site: Site) -> SiteFn:
            def fn(x: Tensor) -> Tensor:
                captured[site.name] = select_tokens(x, tokens).detach()
                return x
            return fn

        with self._hooks([(s, record(s)) for s in parsed]):
            deepest = max(parsed, key=lambda s: s.depth)
            self._run_blocks(self._embed(pixels), 0, deepest.layer + 1)
        return captured

    # ------------------------------------------------------------------ interventions
    @contextmanager
    def intervene(self, site: str | Site, fn: SiteFn) -> Iterator[None]:
        """Within the block, the activation x [B, T, d] at `site` is replaced by fn(x) in every forward."""
        with self._hooks([(self.site(site), fn)]):
            yield

    @contextmanager
    def _hooks(self, edits: Sequence[tuple[Site, SiteFn]]) -> Iterator[None]:
        handles = []
        try:
            for site, fn in edits:
                handles.append(self._register(site, fn))
            yield
        finally:
            for handle in handles:  # only the handles we made: a user's own hooks survive
                handle.remove()

    def _register(self, site: Site, fn: SiteFn) -> torch.utils.hooks.RemovableHandle:
        blocks = self.text_blocks if site.tower == "text" else self.blocks
        assert blocks is not None, "parse_site refuses text sites on a model without a text tower"
        block = blocks[site.layer]

        def checked(x: Tensor) -> Tensor:
            y = fn(x)
            if not isinstance(y, Tensor) or y.shape != x.shape:
                raise ValueError(f"intervention at {site.name} must return a tensor of shape {tuple(x.shape)}, "
                                 f"got {getattr(y, 'shape', type(y).__name__)}")
            return y

        if site.kind == "resid_pre":
            def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
                if args:
                    return (checked(args[0]), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": checked(kwargs["hidden_states"])}
            return block.register_forward_pre_hook(pre_hook, with_kwargs=True)
        if site.kind == "resid_post":
            return block.register_forward_hook(lambda m, a, out: checked(out))
        if site.kind == "attn_out":
            return block.self_attn.register_forward_hook(lambda m, a, out: (checked(out[0]), *out[1:]))
        return block.mlp.register_forward_hook(lambda m, a, out: checked(out))

    # ------------------------------------------------------------------ text and zero-shot
    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], texts_per_batch: int = 256) -> Tensor:
        """Strings → normalised text embeddings [N, embed_dim]."""
        if not self.has_text or self.tokenizer is None:
            raise ValueError(f"{self.name} has no text tower or tokenizer; zero-shot and steerability need a "
                             f"full CLIPModel checkpoint with tokenizer files")
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("encode_text expects a non-empty list of strings")
        out = []
        for i in range(0, len(texts), texts_per_batch):
            enc = self.tokenize(texts[i:i + texts_per_batch])
            feats = self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc.get("attention_mask"))
            feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
            out.append(F.normalize(feats.float(), dim=-1))
        return torch.cat(out)

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Captions → {input_ids, attention_mask} [N, L] on the model's device (padded to the longest)."""
        if not self.has_text or self.tokenizer is None:
            raise ValueError(f"{self.name} has no text tower or tokenizer")
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("expected a non-empty list of strings")
        max_len = self.model.config.text_config.max_position_embeddings
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    @torch.no_grad()
    def capture_text(self, texts: Sequence[str], sites: Sequence[str | Site]) -> tuple[dict[str, Tensor], Tensor]:
        """Text-tower activations for captions: ({site: Tensor[N, L, d_text]}, valid bool [N, L]).

        `valid` marks real tokens (bos, words, eos); padding positions (after eos) are computed by the causal
        transformer but carry no caption, so callers drop them. The eos token (the pooled one) is the last
        valid position of each row.
        """
        parsed = [self.site(s) for s in sites]
        if not parsed or any(s.tower != "text" for s in parsed):
            raise ValueError(f"capture_text needs text sites (text.blocks.<l>.<kind>), got {list(sites)}")
        captured: dict[str, Tensor] = {}

        def record(site: Site) -> SiteFn:
            def fn(x: Tensor) -> Tensor:
                captured[site.name] = x.detach()
                return x
            return fn

        enc = self.tokenize(texts)
        with self._hooks([(s, record(s)) for s in parsed]):
            self.model.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return captured, enc["attention_mask"].bool()

    def zero_shot_head(self, class_names: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",)) -> Tensor:
        """CLIP's zero-shot classifier: per class, the renormalised mean of its normalised prompt embeddings.

        Returns [C, embed_dim].
        """
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"templates must each contain '{{}}' for the class name, got {list(templates)}")
        prompts = [t.format(name) for name in class_names for t in templates]
        emb = self.encode_text(prompts).view(len(class_names), len(templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    def zero_shot_logits(self, image_emb: Tensor, head: Tensor) -> Tensor:
        """[B, E] × [C, E] → logits [B, C] at the model's logit scale."""
        return self.logit_scale * image_emb.float() @ head.float().T


def _has_hooks(module: nn.Module) -> bool:
    """Whether any forward hook (the module's own, a submodule's or a global one) could see this module run."""
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def _cls_row_of_block(block: nn.Module, hidden: Tensor) -> Tensor:
    """A CLIP encoder layer's output at the CLS token only: hidden [B, T, d] → [B, d].

    The same arithmetic as `block(hidden)[:, 0]`: attention of the CLS query over every token's key and value,
    then the residual, layer norm and MLP of that row.
    """
    attn = block.self_attn
    x = block.layer_norm1(hidden)  # [B, T, d]
    b, t, d = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    query = attn.q_proj(x[:, :1]).view(b, 1, heads, head_dim).transpose(1, 2)  # [B, H, 1, dh]
    key = attn.k_proj(x).view(b, t, heads, head_dim).transpose(1, 2)  # [B, H, T, dh]
    value = attn.v_proj(x).view(b, t, heads, head_dim).transpose(1, 2)
    mixed = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)  # [B, H, 1, dh]
    row = hidden[:, 0] + attn.out_proj(mixed.transpose(1, 2).reshape(b, d))
    return row + block.mlp(block.layer_norm2(row))
