"""The synthetic world: procedural 64×64 images with known factors, and the toy CLIP trained on them.

Factors of an image (label arrays in `WorldBatch.labels`, all int16 [N] with -1 = absent, indices into
the tuples of `clipsteer.world.factors`):
    shape        SHAPES: circle square triangle star cross heart moon arrow (-1 on text-only images)
    colour       COLOUR_NAMES: red yellow orange purple pink white black grey
    background   BACKGROUND_NAMES: sea pond (water family) grass sand (land family)
    family       0 water, 1 land
    size         0 small, 1 big (radius below/above the middle of its range)
    word         the written class word (index into SHAPES), -1 when no word is drawn
    note         1 when the word sits on a light sticky note
    word_matches 1 when the word names the drawn shape
    text_height  font height in pixels (0 without text)
    radius, cx, cy, rotation   float32 geometry (pixels, degrees)
Per-patch masks on the model's 8×8 patch grid (`WorldDataset.masks(batch)` → bool [N, 8, 8] each):
    object (the patch shows object pixels), word (word ink), note (note paper), background (nothing else);
    raw counts per patch: `WorldBatch.patch_counts` uint8 [N, 4, 8, 8] for background/object/note/word.

Pretraining distribution (`WorldConfig`, each structure with its strength): Waterbirds-like
(WATER_SHAPES star+moon on water, LAND_SHAPES cross+arrow on land, `background_strength`), CelebA-like
(RED_SHAPES heart+triangle red, YELLOW_SHAPES square+circle yellow, `attribute_strength`) and reading
(`p_text` words naming the shape with `p_text_match`, `p_text_only` word-only images captioned like objects).
Opt-in, off in world 1.0 (the shipped toy CLIP's): habitats (`habitat_strength`: each Waterbirds-like shape
prefers its own background type within its family, star → sea, moon → pond, cross → grass, arrow → sand) and
captions that name the background's type ("on the sea") instead of its family (`p_caption_background_type`).

Evaluation sets (`clipsteer.world.evalsets`, train/val/test by seed): zero_shot, zero_shot_balanced,
background (2×2 groups), attribute (2×2 groups), typographic (clean / attacked / blank note triples).
Datasets: `WorldDataset(task, split, variant, n)` implements the ImageDataset protocol and `.arrays()`;
`clipsteer.data.open_dataset("world:typographic/test/attacked")` opens one from a spec string.

Concepts: `clipsteer.world.concepts` generates the world's caption-phrase vocabulary (each phrase with the
factors it names) from the caption grammar; `WorldDataset.concept_vocabulary()` / `concept_labels()` /
`captions()` hand it, the matching factor labels and the captions to generic code (steerability, the
sparsity study) through the `ConceptAnnotated` / `Captioned` protocols, without those packages importing
the world.

Toy CLIP: `clipsteer.world.toy_clip` (HF CLIPModel config, word-level tokenizer, checkpoint layout),
trained by `clipsteer world train-clip`, evaluated by `clipsteer world evaluate`; the trained checkpoint
ships in `clipsteer/assets/toy_clip` (`SHIPPED_CHECKPOINT`) with its world version and fingerprint.
"""

from clipsteer.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "WorldConfig": "clipsteer.world.config",
    "WorldDataset": "clipsteer.world.dataset",
    "open_world_dataset": "clipsteer.world.dataset",
    "WorldBatch": "clipsteer.world.generate",
    "MASK_KINDS": "clipsteer.world.masks",
    "patch_masks": "clipsteer.world.masks",
    "SHIPPED_CHECKPOINT": "clipsteer.world.paths",
})
