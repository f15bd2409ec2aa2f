"""What every part of `make bench` shares: its photos, how masks are compared, rows and targets."""

from __future__ import annotations

import io
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MODELS = ("u2net", "u2netp")
# name, scikit-image photo, size: made by LANCZOS-resizing, saved as JPEG q90.
IMAGES = (
    ("0.3 MP", "coffee", (672, 448)),
    ("1 MP", "astronaut", (1024, 1024)),
    ("12 MP", "astronaut", (3464, 3464)),
)
# How often the latency client asks for status: often enough that polling
# adds little to the measured latency, rarely enough that its requests do
# not steal much CPU from the worker on a 2-core machine.
CLIENT_POLL_SECONDS = 0.05
# Many jobs at once are awaited in submission order at this pace.
BATCH_POLL_SECONDS = 0.1


def make_photo(photo: str, size: tuple[int, int]) -> bytes:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
    img = img.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def alpha_of(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    img.load()
    return np.asarray(img.convert("RGBA"))[..., 3]


def agreement(reference: bytes, candidate: bytes) -> tuple[float, float]:
    """(IoU of alpha > 127, mean |alpha difference| in 0..255) against the reference."""
    ref, got = alpha_of(reference), alpha_of(candidate)
    if ref.shape != got.shape:
        return 0.0, 255.0
    ref_fg, got_fg = ref > 127, got > 127
    union = np.logical_or(ref_fg, got_fg).sum()
    iou = 1.0 if union == 0 else float(np.logical_and(ref_fg, got_fg).sum() / union)
    return iou, float(np.abs(ref.astype(np.int16) - got.astype(np.int16)).mean())


@dataclass
class Series:
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self) -> str:
        return f"{min(self.seconds):.3f}–{max(self.seconds):.3f}"


@dataclass
class Row:
    model: str
    image: str
    pixels: int
    rembg: Series = field(default_factory=Series)
    pipeline: Series = field(default_factory=Series)
    service: Series = field(default_factory=Series)
    pipeline_agreement: tuple[float, float] = (0.0, 255.0)
    service_agreement: tuple[float, float] = (0.0, 255.0)


@dataclass
class Target:
    name: str
    measured: str
    passed: bool
