"""Steerability: how precisely does clamping one feature move CLIP's reading of an image?

For feature j, clamp it to α on the chosen tokens (delta form, error term kept), read CLIP's softmax
over a concept vocabulary V for N images, and compare with the clean images:
    Δ_j(v) = mean_i [p_steered,i(v) − p_clean,i(v)],   p = softmax_v(τ · e_img · t_v)
    S_j = Σ_v Δ_j(v)²   (steerability),   P_j = max_v Δ_j(v)   (steering power),
    top concept = argmax_v Δ_j(v);  steerable when S_j > threshold.
Defaults follow the paper's code: α = 150, N = 192, |V| = 5000, all tokens, τ = 100, threshold 0.10.

Three engines give the same numbers:
- "plain": one hooked forward of all N images per feature (the reference).
- "suffix": the clean prefix is computed once; a single-feature edit is rank one,
  h'_ij = h_i + c_ij · w_j with c_ij = scale(h_i) · (α − f_ij) on the chosen tokens, so many features
  are stacked into one batch and only the blocks after the site are rerun (`encode_from`).
- "closed_form": at the last block only the CLS row reaches the output, and
  e' = normalise(P · LN(h_cls + c·w)). LN's mean and variance, the projection and the dot products
  with the vocabulary expand into per-(image, feature) scalars and two matrix products, so all
  steered logits come without any transformer forward. Exact, not an approximation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from clipsteer.models.backbone import Backbone
from clipsteer.models.sites import Site, TokenSelection
from clipsteer.steer.configs import Engine
from clipsteer.steer.dictionary import LinearDictionary
from clipsteer.steer.interventions import Edit, edit_fn, token_mask


@dataclass(frozen=True)
class SteeringSpec:
    alpha: float = 150.0
    tokens: TokenSelection = "all"
    temperature: float = 100.0
    threshold: float = 0.10


@dataclass(frozen=True)
class SteeringScores:
    """Per feature: index [K], steerability S [K], power P [K], top concept index [K]."""

    features: Tensor
    steerability: Tensor
    power: Tensor
    top_concept: Tensor

    def steerable(self, threshold: float) -> Tensor:
        return self.steerability > threshold


def scores_from_delta(features: Tensor, delta: Tensor) -> SteeringScores:
    """Δ [K, V] (mean steered − mean clean probabilities) → S, P and top concept per feature."""
    assert delta.ndim == 2 and delta.shape[0] == features.numel()
    power, top = delta.max(dim=1)
    return SteeringScores(features.cpu(), delta.pow(2).sum(dim=1).cpu(), power.cpu(), top.cpu())


def mean_probs(image_emb: Tensor, text: Tensor, temperature: float) -> Tensor:
    """[..., N, E] × [V, E] → mean over images of softmax(τ·e·tᵀ), [..., V]."""
    return torch.softmax(temperature * image_emb.float() @ text.float().T, dim=-1).mean(dim=-2)


def resume_site(backbone: Backbone, site: Site) -> Site | None:
    """The residual site where a delta edit at `site` can be added and the forward resumed, if any."""
    if site.kind in ("resid_pre", "resid_post"):
        return site
    if site.kind == "mlp_out":  # resid_post = (resid_pre + attn_out) + mlp_out: the same delta, one step on
        return Site(site.layer, "resid_post")
    return None  # attn_out feeds the MLP of its own block: only the plain engine is exact


class SteeringRun:
    """Clean activations and readout for one (backbone, site, dictionary, images, vocabulary)."""

    def __init__(self, backbone: Backbone, site: str | Site, dictionary: LinearDictionary, pixels: Tensor,
                 text: Tensor, spec: SteeringSpec = SteeringSpec(), image_batch: int = 64):
        self.backbone, self.dictionary, self.spec = backbone, dictionary, spec
        self.site = backbone.site(site)
        if dictionary.d_in != backbone.d_model:
            raise ValueError(f"dictionary has d_in = {dictionary.d_in} but {backbone.name} has d_model = "
                             f"{backbone.d_model} at {self.site.name}")
        self.pixels, self.text, self.image_batch = pixels, text.float(), image_batch
        self.resume = resume_site(backbone, self.site)
        sites = [self.site] + ([self.resume] if self.resume and self.resume != self.site else [])
        acts = [backbone.capture(pixels[i:i + image_batch], sites) for i in range(0, len(pixels), image_batch)]
        self.site_acts = torch.cat([a[self.site.name] for a in acts])  # [N, T, d] where codes are read
        self.resume_acts = torch.cat([a[self.resume.name] for a in acts]) if self.resume else None
        clean = backbone.encode_image(pixels, image_batch)
        self.clean_probs = mean_probs(clean, self.text, spec.temperature)  # [V]
        self.mask = token_mask(spec.tokens, *self.site_acts.shape[:2], self.site_acts.device)  # [N, T]
        self.scale = dictionary.scale(self.site_acts)  # [N, T, 1]
        self._code_cache: dict[str, Tensor] = {}
        self._closed_form_cache: dict[str, Tensor] | None = None
        self._logit_buffer: Tensor | None = None

    @property
    def closed_form_available(self) -> bool:
        return self.resume is not None and self.resume == Site(self.backbone.n_layers - 1, "resid_post")

    def scores(self, features: Sequence[int] | Tensor, engine: Engine = "auto", feature_batch: int = 16,
               progress: bool = True, alpha: float | None = None) -> SteeringScores:
        """Scores of `features`, clamped to `alpha` (default: the spec's α; the clean pass is shared)."""
        features = torch.as_tensor(features, dtype=torch.long)
        alpha = self.spec.alpha if alpha is None else alpha
        if engine == "auto":
            engine = "closed_form" if self.closed_form_available else ("suffix" if self.resume else "plain")
        if engine == "closed_form" and not self.closed_form_available:
            raise ValueError(f"the closed form needs the last block's resid_post or mlp_out, not {self.site.name}")
        if engine == "suffix" and self.resume is None:
            raise ValueError(f"the suffix engine cannot resume from {self.site.name}; use engine='plain'")
        step = {"plain": 1, "suffix": feature_batch, "closed_form": max(feature_batch, 32)}[engine]
        run = {"plain": self._plain, "suffix": self._suffix, "closed_form": self._closed_form}[engine]
        parts = []  # scores per chunk: the [K, V] deltas are never kept for all features at once
        chunks = range(0, len(features), step)
        for start in tqdm(chunks, desc=f"steering ({engine})", disable=not progress or len(chunks) < 2):
            chunk = features[start:start + step]
            parts.append(scores_from_delta(chunk, run(chunk, alpha) - self.clean_probs))
        return SteeringScores(*(torch.cat([getattr(p, f.name) for p in parts])
                                for f in dataclasses.fields(SteeringScores)))

    # ---------------------------------------------------------------- engines: features [K] → mean probs [K, V]
    def _plain(self, features: Tensor, alpha: float) -> Tensor:
        out = []
        for j in features.tolist():
            edit = Edit((j,), "clamp", alpha, self.spec.tokens)
            with self.backbone.intervene(self.site, edit_fn(self.dictionary, [edit])):
                emb = self.backbone.encode_image(self.pixels, self.image_batch)
            out.append(mean_probs(emb, self.text, self.spec.temperature))
        return torch.stack(out)

    def _codes(self, cls_only: bool) -> Tensor:
        """Clean codes, computed once: [N, 1, F] for the CLS row only, else [N, T, F] (N·T·F floats)."""
        key = "cls" if cls_only else "all"
        if key not in self._code_cache:
            acts = self.site_acts[:, :1] if cls_only else self.site_acts
            self._code_cache[key] = torch.cat([self.dictionary.codes(acts[i:i + self.image_batch])
                                               for i in range(0, len(acts), self.image_batch)])
        return self._code_cache[key]

    def _coefficients(self, features: Tensor, alpha: float, cls_only: bool = False) -> Tensor:
        """c [N, T, K] (T = 1 with cls_only) = scale · (α − f_j) on the chosen tokens, 0 elsewhere."""
        tokens = slice(0, 1) if cls_only else slice(None)
        codes = self._codes(cls_only)[..., features.to(self.site_acts.device)]
        c = self.scale[:, tokens] * (alpha - codes)
        return c * self.mask[:, tokens, None]

    def _suffix(self, features: Tensor, alpha: float) -> Tensor:
        c = self._coefficients(features, alpha)  # [N, T, K]
        w = self.dictionary.directions()[features].to(c)  # [K, d]
        n, k_count = len(self.pixels), len(features)
        emb = torch.empty(k_count * n, self.backbone.embed_dim, device=c.device)
        for start in range(0, k_count * n, self.image_batch):  # (feature, image) pairs stacked in one batch
            pair = torch.arange(start, min(start + self.image_batch, k_count * n), device=c.device)
            k, i = pair // n, pair % n
            hidden = self.resume_acts[i] + c[i, :, k, None] * w[k][:, None, :]  # [b, T, d]
            emb[pair] = self.backbone.encode_from(self.resume, hidden.to(self.resume_acts.dtype))
        return mean_probs(emb.view(k_count, n, -1), self.text, self.spec.temperature)

    def _closed_form_constants(self) -> dict[str, Tensor]:
        """Per-run pieces of the closed form (float64): everything that does not depend on the feature."""
        if self._closed_form_cache is None:
            vision, model = self.backbone.vision, self.backbone.model
            ln, proj = vision.post_layernorm, model.visual_projection
            assert proj.bias is None, "CLIP's visual projection has no bias"
            f64 = torch.float64
            A = proj.weight.detach().to(f64) * ln.weight.detach().to(f64)  # [E, d]: projection ∘ LN gain
            q = proj.weight.detach().to(f64) @ ln.bias.detach().to(f64)  # [E]: projection of LN bias
            h = self.resume_acts[:, 0].to(f64)  # CLS row [N, d]
            z = h - h.mean(-1, keepdim=True)
            a = z @ A.T  # [N, E]
            text = self.text.to(f64)
            self._closed_form_cache = {
                "A": A, "q": q, "z": z, "a": a,
                "zz": (z * z).sum(-1), "aa": (a * a).sum(-1), "aq": a @ q, "qq": q @ q,
                "aT": (a @ text.T).float(), "qT": (q @ text.T).float(), "eps": torch.tensor(ln.eps, dtype=f64),
            }
        return self._closed_form_cache

    @torch.no_grad()
    def _closed_form(self, features: Tensor, alpha: float) -> Tensor:
        k = self._closed_form_constants()
        f64 = torch.float64
        w = self.dictionary.directions()[features].to(f64)  # [K, d]
        zw = w - w.mean(-1, keepdim=True)
        c = self._coefficients(features, alpha, cls_only=True)[:, 0].to(f64)  # [N, K]
        # LN of h + c·w: mean shifts by c·mean(w); centred vector z + c·zw; variance below.
        var = (k["zz"][:, None] + 2 * c * (k["z"] @ zw.T) + c**2 * (zw * zw).sum(-1)) / zw.shape[-1]
        r = torch.sqrt(var + k["eps"])  # [N, K]
        b = zw @ k["A"].T  # [K, E]
        # u = (a + c·b)/r + q is the unnormalised embedding; its norm from precomputed dot products.
        norm2 = ((k["aa"][:, None] + 2 * c * (k["a"] @ b.T) + c**2 * (b * b).sum(-1)) / r**2
                 + 2 * (k["aq"][:, None] + c * (b @ k["q"])) / r + k["qq"])
        bT = b.float() @ self.text.T  # [K, V]
        # logit[k, n, v] = τ·(α·aT[n,v] + β·bT[k,v] + γ·qT[v]) with α = 1/(r‖u‖), β = c·α, γ = 1/‖u‖.
        gamma = self.spec.temperature / norm2.sqrt()  # [N, K]
        alpha_ = (gamma / r).T.float()  # [K, N]
        beta = (c * gamma / r).T.float()
        gamma = gamma.T.float()
        # The [K, N, V] block is the whole cost: fill one reused buffer in place (fresh allocations of
        # this size cost more in page faults than the arithmetic), then softmax-and-average via bmm.
        n_feat, n_img, n_voc = len(features), *k["aT"].shape
        if self._logit_buffer is None or self._logit_buffer.shape[0] < n_feat:
            self._logit_buffer = torch.empty(n_feat, n_img, n_voc, device=k["aT"].device)
        logits = self._logit_buffer[:n_feat]
        torch.mul(k["aT"][None], alpha_[..., None], out=logits)
        logits.addcmul_(beta[..., None], bT[:, None])
        logits.addcmul_(gamma[..., None], k["qT"])
        logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
        weights = 1.0 / (logits.sum(dim=-1) * n_img)  # [K, N]: softmax normaliser and the mean over images
        return torch.bmm(weights[:, None, :], logits).squeeze(1)
