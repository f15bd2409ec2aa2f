"""Shadows from the mask: where each kind lies, how it scales, what it costs."""

import time

import numpy as np
import pytest
from PIL import Image

from imaging.shadows import WORK_SIDE, cast_shadow


def disc(size=(800, 600), centre=(400, 260), radius=120) -> tuple[Image.Image, tuple]:
    """A round subject's mask and its box."""
    yy, xx = np.mgrid[: size[1], : size[0]]
    inside = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
    mask = Image.fromarray((inside * 255).astype(np.uint8), "L")
    return mask, mask.getbbox()


def centroid(alpha: np.ndarray, origin=(0, 0)) -> tuple[float, float]:
    yy, xx = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    weight = alpha.astype(np.float64)
    return (
        (xx * weight).sum() / weight.sum() + origin[0],
        (yy * weight).sum() / weight.sum() + origin[1],
    )


def on_canvas(shadow, size) -> np.ndarray:
    return np.asarray(shadow.layer(size), dtype=np.float64)


def test_a_drop_shadow_lies_down_and_right_of_the_subject_by_its_size():
    offsets = []
    for radius in (60, 120):
        mask, box = disc(radius=radius)
        shadow = cast_shadow(mask, box, "drop", 0.5)
        x, y = centroid(np.asarray(shadow.alpha), shadow.origin)
        offsets.append((x - 400, y - 260))
        assert x > 400 and y > 260
        # At half strength, the shadow is at most half opaque.
        assert 100 <= np.asarray(shadow.alpha).max() <= 128
    # Twice the subject, twice the offset (within a pixel of rounding).
    assert offsets[1][0] == pytest.approx(2 * offsets[0][0], abs=1.5)


def test_a_3d_shadow_lies_behind_the_subject_on_the_ground_leaning_right():
    mask, box = disc()
    layer = on_canvas(cast_shadow(mask, box, "3D", 0.6), mask.size)
    base = box[3]
    behind = layer[: base - 5]  # above the ground line in the picture
    below = layer[base + 15 :]
    assert behind.sum() > 10 * below.sum()
    x, _ = centroid(behind)
    assert x > 400  # leaning right
    # The cast silhouette is squashed: nothing of it reaches far up the subject.
    assert layer[: box[1] + (box[3] - box[1]) // 2].max() < 3
    # A dark contact shadow where it stands.
    assert layer[base - 3 : base + 3, 390:410].max() > 0.5 * 255 * 0.6


def test_a_car_shadow_is_a_contact_shadow_around_the_ground_line():
    mask, box = disc()
    layer = on_canvas(cast_shadow(mask, box, "car", 0.75), mask.size)
    rows = layer.sum(axis=1)
    height = box[3] - box[1]
    near_ground = rows[box[3] - height // 8 : box[3] + height // 8].sum()
    assert near_ground > 0.9 * rows.sum()
    # Wider than the subject's footprint, darkest under its middle.
    columns = layer.sum(axis=0)
    assert columns[400] == columns.max() or columns[400] > 0.95 * columns.max()


def test_no_shadow_without_a_subject_or_an_opacity():
    mask, box = disc()
    assert cast_shadow(mask, box, "drop", 0.0) is None
    assert cast_shadow(Image.new("L", (50, 50)), (10, 10, 10, 10), "drop", 0.5) is None


def test_a_shadow_reaching_past_the_canvas_says_where_it_lies():
    mask, box = disc(size=(300, 300), centre=(150, 240), radius=60)
    shadow = cast_shadow(mask, box, "car", 0.75)
    assert shadow.box[3] > 300  # below the canvas: crop grows to keep it
    layer = shadow.layer((300, 300))
    assert layer.size == (300, 300)


def test_a_12_mp_shadow_is_computed_small_and_costs_little():
    mask, box = disc(size=(4000, 3000), centre=(2000, 1400), radius=1100)
    started = time.perf_counter()
    shadow = cast_shadow(mask, box, "3D", 0.6)
    shadow.layer(mask.size)
    elapsed = time.perf_counter() - started
    assert max(shadow.alpha.size) > WORK_SIDE  # enlarged back to the canvas's scale
    # A full-size Gaussian blur of the mask alone takes seconds here.
    assert elapsed < 1.5, elapsed
