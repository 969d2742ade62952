"""`ImageFolder`: every image file under a directory, recursively, in sorted relative-path order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from clipsteer.data.protocol import ImageReadError, check_index

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
                              ".pbm", ".pnm"})


HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB: grayscale, palette, CMYK and alpha images convert (transparency is
    composited on white); 16-bit grayscale is scaled (v / 257), not clipped; float images are refused.

    PIL's own `convert("RGB")` clips 16-bit values at 255, which turns almost every pixel of a 16-bit
    PNG white; hence the explicit scaling.
    """
    if img.mode == "RGB":
        return img
    if img.mode in HIGH_BIT_MODES:
        values = np.asarray(img, dtype=np.int64)   # "I" holds 16-bit PNG data in a 32-bit container
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(f"{_label(img)}: 32-bit integer pixel values outside 0..65535 "
                                 "(expected 8- or 16-bit image data)")
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode == "F":
        raise ImageReadError(f"{_label(img)}: floating-point images (PIL mode 'F') are not supported; "
                             "expected 8- or 16-bit integer image data")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _label(img: Image.Image) -> str:
    return str(getattr(img, "filename", "") or "image")


def read_rgb(path: Path) -> Image.Image:
    """Fully decode an image file as RGB, or raise ImageReadError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later inside a batch
            return to_rgb(img)
    except ImageReadError:
        raise
    except FileNotFoundError as err:
        raise ImageReadError(f"image file not found: {path}") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot read image {path}: {err} (expected a decodable image file)") from err


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


class ImageFolder:
    """Images under `root` (recursive; hidden files and folders skipped), sorted by relative path.

    Extensions are matched case-insensitively against IMAGE_EXTENSIONS. Index `i` is stable as long as
    the set of files is: the fingerprint hashes each relative path and file size (not contents, so
    that fingerprinting a million files stays instant; an edit that keeps a file's size is not seen).
    """

    def __init__(self, root: str | Path, extensions: frozenset[str] = IMAGE_EXTENSIONS):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root} (expected a directory of image files)")
        self.extensions = frozenset(e.lower() for e in extensions)
        files = [p.relative_to(self.root) for p in self.root.rglob("*")
                 if p.suffix.lower() in self.extensions and p.is_file()]
        self.files: list[Path] = sorted((f for f in files if not _is_hidden(f)), key=lambda f: f.as_posix())
        if not self.files:
            raise ValueError(f"no image files under {self.root}; expected files ending in "
                             f"{sorted(self.extensions)}")
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, n={len(self)})"

    def path(self, i: int) -> Path:
        return self.root / self.files[check_index(i, len(self), repr(self))]

    def name(self, i: int) -> str:
        """The file's path relative to the root, with forward slashes."""
        return self.files[check_index(i, len(self), repr(self))].as_posix()

    def load(self, i: int) -> Image.Image:
        return read_rgb(self.path(i))

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(b"ImageFolder/v1\n")
            for rel in self.files:
                try:
                    size = (self.root / rel).stat().st_size
                except OSError:
                    size = -1  # vanished since listing; load() will report it
                digest.update(f"{rel.as_posix()}\t{size}\n".encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint
