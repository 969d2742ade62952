"""HTML for the report: an index page (overview, SAE quality, steerability, suppression results, the
feature browser) and one page per feature card. Standard library only (`html`, `string.Template`);
pictures are referenced by relative paths into the report's `img/` folder, so the pages open from
disk with no server. A few lines of inline JavaScript filter the browser; without JavaScript every
card is shown.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from string import Template

from clipsteer.report.cards import FeatureCard
from clipsteer.report.sources import GroupResult, Quality, SAEEntry
from clipsteer.report.steering import SteeringExample


@dataclass(frozen=True)
class TopImage:
    name: str
    value: float
    image_src: str
    heatmap_src: str | None


@dataclass(frozen=True)
class CardView:
    """A feature card with its pictures placed in the report folder."""

    section: str
    """Slug of the SAE section the feature belongs to."""
    sae_label: str
    card: FeatureCard
    images: tuple[TopImage, ...]
    page: str
    """Path of the feature's own page, relative to the report root."""
    example: SteeringExample | None = None
    probe_src: str | None = None


@dataclass(frozen=True)
class Figure:
    src: str
    caption: str


@dataclass(frozen=True)
class SectionView:
    """One SAE: its entry, the quality numbers shown, and notes on what could not be shown."""

    slug: str
    label: str
    entry: SAEEntry
    quality: Quality | None
    n_store_images: int
    model: str
    """The CLIP checkpoint the SAE's activations came from."""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportView:
    title: str
    run: str
    model: str
    sections: tuple[SectionView, ...]
    cards: tuple[CardView, ...]
    quality_figures: tuple[Figure, ...] = ()
    steering_figures: tuple[Figure, ...] = ()
    groups: tuple[tuple[GroupResult, Figure], ...] = ()
    card_pages: dict[tuple[str, int], str] = field(default_factory=dict)
    """(section slug, feature) → page, to link removed features to their cards."""


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.6em;margin:.4em 0 .1em} h2{margin-top:1.6em;border-bottom:2px solid #d8dde6;padding-bottom:4px}
.muted{color:#5b6575;font-size:.9em} table{border-collapse:collapse;margin:8px 0;background:#fff}
th,td{border:1px solid #d8dde6;padding:4px 8px;font-size:.88em;text-align:right} th{background:#eef1f5}
td.l,th.l{text-align:left} figure{display:inline-block;margin:8px 12px 8px 0;background:#fff;padding:6px;
border:1px solid #d8dde6} figure img{max-width:100%} figcaption{font-size:.82em;color:#5b6575;max-width:560px}
.controls{position:sticky;top:0;background:#f6f7f9;padding:8px 0;z-index:2;display:flex;gap:10px;flex-wrap:wrap;
align-items:center} .controls input[type=search]{min-width:260px;padding:4px 8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:10px}
.card{background:#fff;border:1px solid #d8dde6;border-radius:6px;padding:8px;color:inherit;text-decoration:none}
.card:hover{border-color:#3b6fd8} .card .head{display:flex;justify-content:space-between;font-weight:600}
.card .thumbs img{width:60px;height:60px;margin:2px;image-rendering:pixelated;border-radius:2px}
.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:.8em;background:#e7ecf7;margin-right:4px}
.tag.on{background:#d7f2dd} .pairs{display:flex;flex-wrap:wrap;gap:10px}
.pair{background:#fff;border:1px solid #d8dde6;padding:4px;font-size:.8em;text-align:center}
.pair img{width:128px;height:128px;image-rendering:pixelated} .bar{display:inline-block;height:9px;
background:#3b6fd8;vertical-align:middle} .bar.after{background:#d8573b} .missing{outline:3px solid #d8573b}
"""

BROWSER_SCRIPT = """
(function(){
  const q=document.getElementById('q'), sae=document.getElementById('sae'), concept=document.getElementById('concept'),
        only=document.getElementById('steerable'), count=document.getElementById('count');
  const cards=[...document.querySelectorAll('.card')];
  function apply(){
    const text=q.value.trim().toLowerCase(); let shown=0;
    for(const c of cards){
      const ok=(!text||c.dataset.search.includes(text))&&(!sae.value||c.dataset.sae===sae.value)
        &&(!concept.value||c.dataset.concept===concept.value)&&(!only.checked||c.dataset.steerable==='1');
      c.style.display=ok?'':'none'; shown+=ok;
    }
    count.textContent=shown+' of '+cards.length+' features';
  }
  for(const el of [q,sae,concept,only]) el.addEventListener('input',apply);
  apply();
})();
"""

# Marks images that failed to load (red outline) and records the counts on <body>, so a reader sees a
# broken report at a glance and a headless browser's DOM dump says whether the pictures rendered.
IMAGE_CHECK_SCRIPT = """
window.addEventListener('load',function(){
  const imgs=[...document.images]; let ok=0;
  for(const i of imgs){ if(i.complete&&i.naturalWidth>0){ok++;} else {i.classList.add('missing');} }
  document.body.dataset.imagesLoaded=ok; document.body.dataset.imagesMissing=imgs.length-ok;
});
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title><style>$style</style></head>
<body><main>
$body
</main><script>$image_check</script>$script</body></html>
""")


def page(title: str, body: str, script: str = "") -> str:
    return PAGE.substitute(title=e(title), style=STYLE, body=body, image_check=IMAGE_CHECK_SCRIPT,
                           script=f"<script>{script}</script>" if script else "")


def figure(fig: Figure) -> str:
    return f'<figure><img src="{e(fig.src)}" alt="{e(fig.caption)}"><figcaption>{e(fig.caption)}</figcaption></figure>'


def headline_table(sections: Sequence[SectionView]) -> str:
    head = ("<tr><th class=l>SAE</th><th class=l>site</th><th>features</th><th>EV</th><th>L0 patch</th>"
            "<th>L0 CLS</th><th>dead</th><th>CE recovered</th><th>steerable: SAE</th><th>null (random model)</th>"
            "<th>neurons</th><th>factor AUROC (control)</th></tr>")
    rows = []
    for s in sections:
        q, st = s.quality, s.entry.steering
        fr = st.fractions if st else {}
        auroc = ("–" if q is None or q.factor_auroc is None else
                 f"{q.factor_auroc:.3f} ({fmt(q.factor_auroc_control)})")
        rows.append(
            f"<tr><td class=l><a href='#sec-{e(s.slug)}'>{e(s.label)}</a></td><td class=l>{e(s.entry.site)}</td>"
            f"<td>{s.entry.d_sae}</td><td>{fmt(q.explained_variance if q else None)}</td>"
            f"<td>{fmt(q.l0_patches if q else None, 1)}</td><td>{fmt(q.l0_cls if q else None, 1)}</td>"
            f"<td>{pct(q.dead_fraction if q else None)}</td>"
            f"<td>{'–' if q is None or q.ce_recovered_pct is None else f'{q.ce_recovered_pct:.1f}%'}</td>"
            f"<td>{pct(fr.get('sae'))}</td><td>{pct(fr.get('random_sae'))}</td><td>{pct(fr.get('neurons'))}</td>"
            f"<td>{auroc}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def section_details(s: SectionView) -> str:
    q, st = s.quality, s.entry.steering
    lines = [f"<h3 id='sec-{e(s.slug)}'>{e(s.label)}</h3><p class=muted>{e(s.entry.architecture)} SAE, "
             f"{s.entry.d_sae} features at <code>{e(s.entry.site)}</code>; folder <code>{e(s.entry.sae_dir)}</code>; "
             f"feature cards from {s.n_store_images} images of <code>{e(s.entry.store_dir)}</code>.</p>"]
    if q is not None:
        lines.append(f"<p class=muted>Quality numbers from <code>{e(q.source)}</code>.</p>")
    if st is not None:
        matched = len(st.concept_matched)
        lines.append(f"<p class=muted>Steerability: α = {st.alpha:g} on {e(st.tokens)} tokens, τ = "
                     f"{st.temperature:g}, |V| = {st.n_words}, {st.n_images} images of <code>{e(st.images)}</code>, "
                     f"steerable when S &gt; {st.threshold:g}"
                     + (f"; {matched} steerable features steer towards a factor they detect" if st.detected_factors
                        else "") + ".</p>")
    lines += [f"<p class=muted>{e(n)}</p>" for n in s.notes]
    return "".join(lines)


def group_section(result: GroupResult, fig: Figure, pages: dict[tuple[str, int], str],
                  sections: Sequence[SectionView]) -> str:
    slug = next((s.slug for s in sections if s.entry.site == result.site), None)
    metrics = "".join(f"<tr><td class=l>{e(k)}</td><td>{fmt(b)}</td><td>{fmt(a)}</td></tr>"
                      for k, (b, a) in result.metrics.items())
    groups = "".join(f"<tr><td class=l>{e(g)}</td><td>{fmt(b)}</td><td>{fmt(a)}</td></tr>"
                     for g, (b, a) in result.groups.items())
    controls = "".join(f"<tr><td class=l>{e(name)}</td><td class=l>"
                       + ", ".join(f"{e(k)} {fmt(v)}" for k, v in c.items()) + "</td></tr>"
                       for name, c in result.controls.items())
    links = []
    for j in result.removed_features:
        target = pages.get((slug, j)) if slug else None
        links.append(f"<a href='{e(target)}'>#{j}</a>" if target else f"#{j}")
    return (f"<h3>{e(result.title)}</h3>{figure(fig)}"
            f"<table><tr><th class=l>metric</th><th>before</th><th>after</th></tr>{metrics}</table>"
            + (f"<table><tr><th class=l>group</th><th>before</th><th>after</th></tr>{groups}</table>" if groups else "")
            + (f"<table><tr><th class=l>control</th><th class=l>result</th></tr>{controls}</table>" if controls else "")
            + f"<p>Removed features: {' '.join(links) or 'none'}</p>")


def card_tile(view: CardView) -> str:
    c = view.card
    concept = c.top_concept or ""
    search = " ".join([f"#{c.feature}", str(c.feature), concept, *c.factor_aurocs, view.sae_label]).lower()
    thumbs = "".join(f"<img src='{e(i.heatmap_src or i.image_src)}' alt='top image {k + 1}' loading='eager'>"
                     for k, i in enumerate(view.images[:4]))
    steer = (f"S {fmt(c.steerability)}" if c.steerability is not None else "S not scored")
    tags = f"<span class='tag{' on' if c.steerable else ''}'>{e(concept)}</span>" if concept else ""
    tags += "".join(f"<span class=tag>{e(f)}</span>" for f in list(c.factor_aurocs)[:2])
    return (f"<a class=card href='{e(view.page)}' data-sae='{e(view.section)}' data-concept='{e(concept)}' "
            f"data-steerable='{1 if c.steerable else 0}' data-search='{e(search)}'>"
            f"<div class=head><span>#{c.feature}</span><span class=muted>{e(view.sae_label)}</span></div>"
            f"<div>{tags}</div><div class=muted>{steer} · fires on {pct(c.frequency)} of tokens, "
            f"{pct(c.image_frequency)} of images</div>"
            f"<div class=thumbs>{thumbs or '<span class=muted>never fires on the store images</span>'}</div></a>")


def browser(cards: Sequence[CardView], sections: Sequence[SectionView]) -> str:
    concepts = sorted({c.card.top_concept for c in cards if c.card.top_concept})
    sae_options = "".join(f"<option value='{e(s.slug)}'>{e(s.label)}</option>" for s in sections)
    concept_options = "".join(f"<option>{e(c)}</option>" for c in concepts)
    return (f"<div class=controls><input id=q type=search placeholder='search: feature number, concept, factor'>"
            f"<select id=sae><option value=''>all SAEs</option>{sae_options}</select>"
            f"<select id=concept><option value=''>all concepts</option>{concept_options}</select>"
            f"<label><input id=steerable type=checkbox> steerable only</label><span id=count class=muted></span></div>"
            f"<div class=grid id=browser>{''.join(card_tile(c) for c in cards)}</div>")


def index_html(view: ReportView) -> str:
    body = [f"<h1>{e(view.title)}</h1><p class=muted>Run <code>{e(view.run)}</code> · model <code>{e(view.model)}"
            f"</code></p>",
            "<h2 id=overview>Overview</h2>",
            "<p>One row per SAE. EV: explained variance of the activations; L0: active features per token; dead: "
            "features that never fire; CE recovered: how much of CLIP's zero-shot accuracy survives splicing "
            "the SAE in. Steerable: share of scored features whose clamping moves CLIP's reading of images "
            "by S above the threshold — compare the SAE with the null (the same directions in a model with "
            "random vision weights) and with single neurons.</p>",
            headline_table(view.sections),
            "<h2 id=quality>SAE quality</h2>", "".join(figure(f) for f in view.quality_figures),
            "".join(section_details(s) for s in view.sections)]
    if view.steering_figures:
        body += ["<h2 id=steerability>Steerability</h2>", "".join(figure(f) for f in view.steering_figures)]
    if view.groups:
        body += ["<h2 id=suppression>Feature suppression</h2>"]
        body += [group_section(r, f, view.card_pages, view.sections) for r, f in view.groups]
    body += [f"<h2 id=features>Feature browser</h2><p class=muted>{len(view.cards)} feature cards. Heat maps show "
             "where on each top image the feature fires (brighter = stronger, relative to that image's peak). "
             "Click a card for its page.</p>", browser(view.cards, view.sections)]
    return page(view.title, "\n".join(body), BROWSER_SCRIPT)


def example_table(example: SteeringExample) -> str:
    peak = max([*example.before, *example.after, 1e-9])
    rows = "".join(
        f"<tr><td class=l>{e(label)}</td><td>{b:.3f} <span class=bar style='width:{60 * b / peak:.0f}px'></span></td>"
        f"<td>{a:.3f} <span class='bar after' style='width:{60 * a / peak:.0f}px'></span></td></tr>"
        for label, b, a in zip(example.labels, example.before, example.after, strict=True))
    return (f"<table><tr><th class=l>label</th><th>p before</th><th>p after (α = {example.alpha:g})</th></tr>"
            f"{rows}</table>")


def feature_html(view: CardView, curve_src: str | None = None) -> str:
    c = view.card
    pairs = "".join(
        f"<div class=pair><img src='../{e(i.image_src)}' alt='top image {k + 1}'>"
        + (f"<img src='../{e(i.heatmap_src)}' alt='heat map {k + 1}'>" if i.heatmap_src else "")
        + f"<br>{e(i.name)} · {i.value:.3g}</div>" for k, i in enumerate(view.images))
    stats = [("fires on (tokens)", pct(c.frequency)), ("fires on (images)", pct(c.image_frequency)),
             ("steerability S", fmt(c.steerability)), ("steering power P", fmt(c.power)),
             ("top concept", e(c.top_concept or "–")),
             ("steerable", "–" if c.steerable is None else ("yes" if c.steerable else "no"))]
    if c.factor_aurocs:
        stats.append(("top concept names a detected factor", "yes" if c.concept_matches_factor else "no"))
    rows = "".join(f"<tr><th class=l>{k}</th><td>{v}</td></tr>" for k, v in stats)
    factors = "".join(f"<tr><td class=l>{e(f)}</td><td>{a:.3f}</td></tr>"
                      for f, a in sorted(c.factor_aurocs.items(), key=lambda fa: -fa[1]))
    body = [f"<p><a href='../index.html#features'>← all features</a></p><h1>Feature #{c.feature}</h1>",
            f"<p class=muted>{e(view.sae_label)}</p><table>{rows}</table>"]
    if factors:
        body.append(f"<h2>Ground-truth factors it detects</h2><table><tr><th class=l>factor</th><th>image-level "
                    f"AUROC</th></tr>{factors}</table>")
    body.append(f"<h2>Top-activating images</h2><div class=pairs>{pairs or 'This feature never fired.'}</div>")
    if view.example is not None:
        probe = f"<img src='../{e(view.probe_src)}' alt='probe image' width=128>" if view.probe_src else ""
        body.append(f"<h2>Steering example</h2><p class=muted>CLIP's reading of a probe image over the vocabulary, "
                    f"clean and with feature #{c.feature} clamped to α.</p>{probe}{example_table(view.example)}")
    if curve_src:
        body.append(f"<h2>Strength curve</h2><img src='../{e(curve_src)}' alt='strength curve'>")
    return page(f"Feature #{c.feature} · {view.sae_label}", "\n".join(body))


def manifest(view: ReportView) -> str:
    """A small JSON index of the cards (for scripts that want the numbers behind the pages)."""
    return json.dumps([{"sae": c.section, "feature": c.card.feature, "page": c.page, "frequency": c.card.frequency,
                        "steerability": c.card.steerability, "top_concept": c.card.top_concept,
                        "top_images": list(c.card.top_images), "factor_aurocs": c.card.factor_aurocs}
                       for c in view.cards], indent=1)
