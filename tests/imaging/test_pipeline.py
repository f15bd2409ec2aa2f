"""The fast pipeline must give rembg's masks, as a PNG anything can read."""

import io
import time

import numpy as np
import pytest
from PIL import Image
from rembg import remove

from imaging import finishing, model, pipeline
from removal import registry
from tests.images import SMALL_SUBJECTS, decode, encode, photo, small_subject_jpeg
from tests.removal.helpers import alpha, assert_same_mask

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def u2net():
    return registry.get_session("u2net")


def jpeg_of(name: str, size: tuple[int, int] | None = None, **params) -> bytes:
    img = photo(name)
    if size is not None:
        img = img.resize(size, Image.Resampling.LANCZOS)
    return encode(img, "JPEG", quality=90, **params)


def run(data: bytes, session) -> finishing.Finished:
    return pipeline.remove_background(data, session, max_pixels=50_000_000)


@pytest.mark.parametrize(
    "name, size",
    [("astronaut", None), ("coffee", None), ("chelsea", None), ("astronaut", (2048, 2048))],
)
def test_its_u2netp_masks_match_rembg_remove(u2netp, name, size):
    data = jpeg_of(name, size)
    assert_same_mask(run(data, u2netp).data, remove(data, session=u2netp))


@pytest.mark.parametrize("name, size", [("coffee", (1800, 1200))])
def test_its_u2net_masks_match_rembg_remove(u2net, name, size):
    data = jpeg_of(name, size)
    assert_same_mask(run(data, u2net).data, remove(data, session=u2net))


@pytest.mark.parametrize("label", ["rocket-1.5pct", "thin-astronaut"])
def test_its_masks_match_rembg_remove_on_small_and_thin_subjects_in_12_mp_frames(u2netp, label):
    """Where a shortcut in the resize to the model's 320x320 shows: IoU 0.98 with one."""
    assert label in {name for name, *_ in SMALL_SUBJECTS}
    data = small_subject_jpeg(label)
    assert_same_mask(run(data, u2netp).data, remove(data, session=u2netp))


@pytest.mark.parametrize(
    "size",
    # Pillow shrinks along the rows first up to height - 320 == 2 * (width - 320).
    [(4001, 2999), (2999, 4001), (2300, 4280), (2300, 4281), (1500, 3000), (640, 6400)],
)
def test_its_resize_to_the_model_input_is_exactly_pillows_lanczos(size):
    """The banded, threaded shrink must equal one ``resize()``, pixel for pixel."""
    noise = np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), np.uint8)
    img = Image.fromarray(noise, "RGB")
    want = img.resize((320, 320), Image.Resampling.LANCZOS)
    got = model._lanczos_shrink(img, (320, 320))
    assert np.array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("name", ["chelsea", "black"])
def test_its_model_input_is_the_whole_array_float32_normalisation_bit_for_bit(name):
    """Written plane by plane into the tensor, the same float32 steps as numpy
    on the whole array, and rembg's float64 ``normalize`` to float32 precision."""
    img = Image.new("RGB", (640, 480)) if name == "black" else photo(name).convert("RGB")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    sized = np.asarray(img.resize((320, 320), Image.Resampling.LANCZOS), dtype=np.float32)
    scaled = sized / max(float(sized.max()), 1e-6)
    whole = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    want = np.ascontiguousarray(whole.transpose(2, 0, 1)[None])

    got = model.model_input(img, mean, std, 320)

    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, want)
    in_float64 = sized.astype(np.float64) / max(np.max(sized), 1e-6)
    rembg_like = (in_float64 - np.asarray(mean)) / np.asarray(std)
    assert np.allclose(got[0].transpose(1, 2, 0), rembg_like, atol=1e-5)


def test_its_mask_matches_rembg_on_a_png_with_transparency(u2netp):
    img = photo("chelsea").convert("RGBA")
    data = encode(img, "PNG")
    assert_same_mask(run(data, u2netp).data, remove(data, session=u2netp))


def test_it_keeps_the_input_transparency(u2netp):
    img = photo("astronaut").convert("RGBA")
    img.putalpha(Image.new("L", img.size, 100))
    cutout = run(encode(img, "PNG"), u2netp)
    assert alpha(cutout.data).max() <= 100


def test_its_output_is_a_standard_rgba_png_of_the_size_as_displayed(u2netp):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees: portrait
    data = jpeg_of("coffee", exif=exif.tobytes())  # 600x400 stored
    cutout = run(data, u2netp)

    img = decode(cutout.data)
    assert img.format == "PNG"
    assert img.mode == "RGBA"
    assert img.size == (400, 600) == (cutout.width, cutout.height)
    assert_same_mask(cutout.data, remove(data, session=u2netp))


def test_it_zeroes_the_colour_of_fully_transparent_pixels(u2netp):
    pixels = np.asarray(decode(run(jpeg_of("astronaut"), u2netp).data))
    transparent = pixels[..., 3] == 0
    assert transparent.any()
    assert not pixels[transparent][:, :3].any()
    assert pixels[~transparent][:, :3].any()


@pytest.mark.parametrize("size", [(672, 448), (1224, 816), (2448, 1632)], ids=str)
def test_its_pngs_are_within_5_percent_of_pillows_level_6(u2netp, size):
    """The size rembg's own PNG has (Pillow, level 6, adaptive filters); a size, not a time."""
    data = jpeg_of("coffee", size)
    ours = run(data, u2netp).data
    pixels = np.asarray(decode(ours))
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=6)
    assert len(ours) <= 1.05 * len(buffer.getvalue())


def test_it_uses_a_sessions_own_predict_for_models_it_does_not_know():
    class MaskEverythingSession:
        """A stand-in for a session type (like u2net_cloth_seg) with its own predict."""

        def predict(self, img):
            return [Image.new("L", img.size, 255), Image.new("L", img.size, 0)]

    cutout = run(encode(photo("coffee"), "PNG"), MaskEverythingSession())
    assert alpha(cutout.data).min() == 255


def test_a_small_image_reports_no_progress_a_large_one_each_stage(u2netp):
    """Progress is a database write per step: worth it only where a job takes a while."""
    small, large = [], []
    pipeline.remove_background(
        jpeg_of("coffee"), u2netp, max_pixels=50_000_000, on_progress=lambda *a: small.append(a)
    )
    pipeline.remove_background(
        jpeg_of("astronaut", (2048, 2048)),
        u2netp,
        max_pixels=50_000_000,
        on_progress=lambda *a: large.append(a),
    )

    assert small == []
    percents = [percent for percent, _ in large]
    assert percents == sorted(percents) and percents[0] == 50 and percents[-1] == 95


def test_it_reports_the_seconds_of_each_stage_when_asked(u2netp):
    timings: dict[str, float] = {}
    started = time.perf_counter()
    pipeline.remove_background(jpeg_of("coffee"), u2netp, max_pixels=50_000_000, timings=timings)
    wall = time.perf_counter() - started

    assert list(timings) == ["decode", "model", "composite", "encode"]
    assert all(seconds > 0 for seconds in timings.values())
    assert sum(timings.values()) <= wall


def test_alpha_matting_is_a_stage_of_its_own(u2netp):
    from imaging.options import OutputOptions

    timings: dict[str, float] = {}
    pipeline.remove_background(
        jpeg_of("chelsea"),
        u2netp,
        max_pixels=50_000_000,
        options=OutputOptions(alpha_matting=True),
        timings=timings,
    )

    assert list(timings) == ["decode", "model", "matting", "composite", "encode"]


def test_its_alpha_matting_gives_rembgs_matte(u2netp):
    """rembg.remove(..., alpha_matting=True) with the same thresholds (240/10/10,
    rembg's defaults and ours) on a real photo: the same alpha within rounding
    (at most 1/255 apart, measured on astronaut, chelsea and coffee), and the
    foreground colours in the edge band within 6/255 on average (ours are
    estimated in 256-pixel tiles, rembg's on the whole image: 1.5-3.7
    measured). Matting itself moves the alpha far more than that."""
    from imaging.options import OutputOptions

    data = jpeg_of("chelsea")
    ours = pipeline.remove_background(
        data, u2netp, max_pixels=50_000_000, options=OutputOptions(alpha_matting=True)
    ).data
    theirs = remove(data, session=u2netp, alpha_matting=True)
    unmatted = remove(data, session=u2netp)

    got = np.asarray(decode(ours).convert("RGBA")).astype(np.int16)
    want = np.asarray(decode(theirs).convert("RGBA")).astype(np.int16)
    alpha_diff = np.abs(got[..., 3] - want[..., 3])
    assert alpha_diff.max() <= 2 and alpha_diff.mean() <= 0.5, (alpha_diff.max(), alpha_diff.mean())
    band = (want[..., 3] > 0) & (want[..., 3] < 255)
    colour_diff = np.abs(got[..., :3] - want[..., :3])[band].mean()
    assert band.sum() > 1000 and colour_diff <= 6, (band.sum(), colour_diff)
    # The comparison can tell: rembg's matte is far from its unmatted mask.
    assert np.abs(want[..., 3] - alpha(unmatted)).mean() > 10 * alpha_diff.mean()
