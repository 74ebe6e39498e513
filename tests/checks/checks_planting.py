"""Small planted cases shared by the checks tests (generated here; no network, no real data)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def head_slice(seed: int, size: int = 160) -> np.ndarray:
    """A synthetic MRI-like slice: dark air around a bright textured ellipse with inner structures."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-6, 6), size / 2 + rng.uniform(-6, 6)
    ry, rx = size * rng.uniform(0.32, 0.42), size * rng.uniform(0.26, 0.36)
    r = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
    img = np.where(r < 1, 120.0, 0.0)
    img += np.where((r > 0.8) & (r < 1), 90.0, 0.0)  # skull ring
    for _ in range(6):
        by, bx = cy + rng.uniform(-0.5, 0.5) * ry, cx + rng.uniform(-0.5, 0.5) * rx
        br = rng.uniform(4, 14)
        img += np.where((y - by) ** 2 + (x - bx) ** 2 < br ** 2, rng.uniform(-60, 80), 0.0)
    from scipy.ndimage import gaussian_filter

    tex = gaussian_filter(rng.normal(0, 25, (size, size)), 2.0)
    img = np.where(r < 1, img + tex, img)
    img = gaussian_filter(img, 1.0) + rng.normal(0, 2, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def document(seed: int, w: int = 300, h: int = 400) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(im)
    for k in range(18):
        d.text((int(rng.integers(10, 30)), 15 + 20 * k), "lorem ipsum findings " * int(rng.integers(1, 3)), fill=0)
    return im


def screenshot(seed: int, w: int = 400, h: int = 260) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), (235, 235, 240))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, w, 28], fill=(40, 90, 200))
    for _ in range(6):
        x0, y0 = int(rng.integers(5, w - 120)), int(rng.integers(35, h - 40))
        d.rectangle([x0, y0, x0 + 100, y0 + 30], fill=tuple(int(v) for v in rng.integers(50, 250, 3)))
        d.text((x0 + 5, y0 + 8), "OK", fill=(0, 0, 0))
    return im


def save(path: Path, im, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (im if isinstance(im, Image.Image) else Image.fromarray(im)).save(path, **kw)
    return path


def jpeg_roundtrip(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))
