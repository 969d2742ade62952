"""`clipsteer world show`: a PNG grid of world samples, each with its caption underneath."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from clipsteer.world.configs import ShowConfig
from clipsteer.world.dataset import WorldDataset
from clipsteer.world.evalsets import SPLITS, TASKS, VARIANTS


def _caption_lines(text: str, width_px: int) -> list[str]:
    return textwrap.wrap(text, width=max(8, width_px // 6))[:3]


def show_world(config: ShowConfig) -> Path:
    if config.task not in TASKS or config.split not in SPLITS:
        raise ValueError(f"task must be one of {TASKS} and split one of {SPLITS}")
    variants = (config.variant,) if config.variant else VARIANTS[config.task]
    batches = [WorldDataset(config.task, config.split, v, n=config.n, world=config.world).arrays() for v in variants]
    tiles = [(b.images[i], b.captions[i]) for i in range(config.n) for b in batches]
    side = config.world.image_size * config.scale
    text_h = 40
    cols = config.columns * len(variants) if len(variants) > 1 else config.columns
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * (side + 8), rows * (side + text_h + 8)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for k, (image, text) in enumerate(tiles):
        r, c = divmod(k, cols)
        x, y = c * (side + 8) + 4, r * (side + text_h + 8) + 4
        sheet.paste(Image.fromarray(image).resize((side, side), Image.Resampling.NEAREST), (x, y))
        for j, line in enumerate(_caption_lines(text, side)):
            draw.text((x, y + side + 2 + 12 * j), line, fill="black", font=font)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(config.out)
    print(f"wrote {len(tiles)} samples to {config.out}")
    return config.out
