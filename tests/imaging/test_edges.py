"""Edge colour cleaning and edge refinement (imaging.edges), on images made here.

Each scene is drawn with a known subject colour, background and alpha, and
photographed as a camera mixes them, ``I = a F + (1 - a) B``, so every
expected pixel is known. The model's part runs in
tests/removal/test_finishing.py and over HTTP in tests/removal/test_apis_options.py.
"""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from imaging import edges, finishing, parsers
from imaging.errors import OptionError
from imaging.finishing import finish
from imaging.options import OutputOptions

SIZE = (240, 180)
SUBJECT = (200, 60, 40)
BACKGROUND = (20, 200, 60)


def disc_alpha(size=SIZE, box=(60, 30, 180, 150), blur=4.0) -> np.ndarray:
    """A soft-edged disc, 0..1."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(mask, dtype=np.float32) / 255.0


def photograph(alpha: np.ndarray, subject=SUBJECT, background=BACKGROUND) -> Image.Image:
    """The camera's mix of a flat subject over a flat background."""
    a = alpha[..., None]
    mixed = np.asarray(subject, np.float32) * a + np.asarray(background, np.float32) * (1 - a)
    return Image.fromarray((mixed + 0.5).astype(np.uint8), "RGB")


def as_mask(alpha: np.ndarray) -> Image.Image:
    return Image.fromarray((alpha * 255 + 0.5).astype(np.uint8), "L")


def band_of(mask: Image.Image, low: int = 5) -> np.ndarray:
    values = np.asarray(mask)
    return (values >= low) & (values <= edges.BAND_MAX)


def colour_error(pixels: np.ndarray, where: np.ndarray, colour=SUBJECT) -> float:
    """Mean absolute difference from ``colour`` (0..255) over ``where``."""
    return float(np.abs(pixels[..., :3][where].astype(float) - colour).mean())


@pytest.fixture(params=["numba", "numpy"])
def kernels(request, monkeypatch):
    """Each test runs on the compiled kernels and on the numpy fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(edges, "_kernel_state", [None])
    else:
        assert edges._kernels() is not None, "numba should build the kernels here"
    return request.param


# --- Colour cleaning ----------------------------------------------------------------


def test_cleaning_keeps_the_alpha_and_every_colour_outside_the_band(kernels):
    alpha = disc_alpha()
    img, mask = photograph(alpha), as_mask(alpha)
    out = edges.clean_cutout(img, mask)
    plain = finishing.cutout_pixels(img, mask)
    assert out.shape == plain.shape == (SIZE[1], SIZE[0], 4)
    assert np.array_equal(out[..., 3], np.asarray(mask))
    outside = ~band_of(mask, low=1)
    assert np.array_equal(out[outside], plain[outside])
    assert (out[np.asarray(mask) == 0] == 0).all()


def test_cleaning_finds_the_subjects_colour_where_it_is_mixed_with_the_background(kernels):
    alpha = disc_alpha()
    img, mask = photograph(alpha), as_mask(alpha)
    band = band_of(mask)
    assert band.sum() > 1000
    straight = colour_error(np.asarray(img), band)
    cleaned = colour_error(edges.clean_cutout(img, mask), band)
    assert straight > 40  # the green background shows through
    assert cleaned < 6
    assert cleaned < straight / 8


def test_where_the_mask_is_wider_than_the_subject_the_colours_say_background(kernels):
    # U2-Net's mask is 320x320 scaled up: at 12 MP its edge runs some 0.5 %
    # of the photo past the subject's, saying 0.3-0.9 over pixels that show
    # only background. Those pixels must get the subject's colour, not green.
    size = (960, 720)
    truth = disc_alpha(size, box=(240, 120, 720, 600), blur=1.0)
    wide = disc_alpha(size, box=(234, 114, 726, 606), blur=4.0)
    img, mask = photograph(truth), as_mask(np.maximum(wide, truth))
    only_background = (truth < 0.01) & band_of(mask, low=64)
    assert only_background.sum() > 1000
    cleaned = edges.clean_cutout(img, mask)
    assert colour_error(np.asarray(img), only_background) > 100
    assert colour_error(cleaned, only_background) < 25


def test_a_textured_background_is_cleaned_as_well(kernels):
    # A photographed texture (scikit-image's grass) behind the subject: the
    # background's variance lowers how much the colours are trusted.
    import skimage.data

    alpha = disc_alpha()
    grass = np.asarray(Image.fromarray(skimage.data.grass()).resize(SIZE), np.float32)
    background = grass[..., None] * np.asarray((0.45, 0.85, 0.3), np.float32)
    a = alpha[..., None]
    mixed = np.asarray(SUBJECT, np.float32) * a + background * (1 - a)
    img = Image.fromarray((mixed + 0.5).astype(np.uint8), "RGB")
    mask = as_mask(alpha)
    band = band_of(mask)
    straight = colour_error(np.asarray(img), band)
    cleaned = colour_error(edges.clean_cutout(img, mask), band)
    assert cleaned < straight / 2


def test_an_input_alpha_is_kept_as_in_the_plain_cutout(kernels):
    alpha = disc_alpha()
    img = photograph(alpha).convert("RGBA")
    own = np.zeros(alpha.shape, np.uint8)
    own[:, : SIZE[0] // 2] = 255
    own[:, SIZE[0] // 2 :] = 100
    img.putalpha(Image.fromarray(own, "L"))
    mask = as_mask(alpha)
    out = edges.clean_cutout(img, mask)
    plain = finishing.cutout_pixels(img, mask)
    assert np.array_equal(out[..., 3], plain[..., 3])
    assert (out[plain[..., 3] == 0] == 0).all()


def test_numba_and_numpy_give_the_same_colours(monkeypatch):
    rng = np.random.default_rng(7)
    alpha = disc_alpha()
    img = Image.fromarray(
        (np.asarray(photograph(alpha), np.float32) + rng.normal(0, 6, (SIZE[1], SIZE[0], 3)))
        .clip(0, 255)
        .astype(np.uint8)
    )
    mask = as_mask(alpha)
    compiled = edges.clean_cutout(img, mask).astype(int)
    monkeypatch.setattr(edges, "_kernel_state", [None])
    plain = edges.clean_cutout(img, mask).astype(int)
    difference = np.abs(compiled - plain)
    # float32 against mixed precision: a level here and there.
    assert difference.max() <= 3
    assert difference.mean() < 0.05


def test_every_size_works_even_one_pixel(kernels):
    for size in ((1, 1), (3, 2), (2000, 3), (5, 1500)):
        img = Image.new("RGB", size, (90, 80, 70))
        mask = Image.new("L", size, 128)
        out = edges.clean_cutout(img, mask)
        assert out.shape == (size[1], size[0], 4)
        assert (out[..., 3] == 128).all()


def test_the_warm_up_compiles_the_kernels():
    assert edges.warm_up_edges() >= 0.0
    assert edges._kernels() is not None


# --- Refinement -----------------------------------------------------------------------


def test_refinement_follows_a_sharp_edge_in_the_photo(kernels):
    truth = disc_alpha(blur=0.7)
    img = photograph(truth)
    blurred = as_mask(disc_alpha(blur=8.0))  # the model's mask, scaled up
    refined = edges.refine_edges(img, blurred)
    assert refined.mode == "L" and refined.size == SIZE
    before = np.abs(np.asarray(blurred) / 255.0 - truth).sum()
    after = np.abs(np.asarray(refined) / 255.0 - truth).sum()
    assert after < 0.85 * before


def test_refinement_keeps_sure_pixels_and_a_mask_the_photo_cannot_explain(kernels):
    flat = Image.new("RGB", SIZE, (120, 120, 120))
    mask = as_mask(disc_alpha(blur=8.0))
    refined = np.asarray(edges.refine_edges(flat, mask))
    assert np.array_equal(refined, np.asarray(mask))  # no colour detail: nothing moves
    img = photograph(disc_alpha(blur=0.7))
    values = np.asarray(mask)
    refined = np.asarray(edges.refine_edges(img, mask))
    sure = (values == 0) | (values == 255)
    assert np.array_equal(refined[sure], values[sure])


# --- Options and finishing --------------------------------------------------------------


def test_edge_options_parse_what_forms_and_json_send():
    assert parsers.parse_bool_on("", field="decontaminate") is True
    assert parsers.parse_bool_on(None, field="decontaminate") is True
    assert parsers.parse_bool_on("false", field="decontaminate") is False
    assert parsers.parse_bool_on(False, field="decontaminate") is False
    assert parsers.parse_refine("EDGES") == "edges"
    assert parsers.parse_refine("") == "none"
    with pytest.raises(OptionError) as refused:
        parsers.parse_refine("sharp")
    assert refused.value.field == "refine"
    assert OutputOptions().decontaminate is True
    assert OutputOptions.from_json({"decontaminate": "false"}).to_json() == {"decontaminate": False}


def test_finishing_cleans_by_default_and_not_when_asked():
    alpha = disc_alpha()
    img, mask = photograph(alpha), as_mask(alpha)
    band = band_of(mask)
    default = np.asarray(Image.open(io.BytesIO(finish(img, mask).data)))
    off = finish(img, mask, OutputOptions(decontaminate=False))
    plain = np.asarray(Image.open(io.BytesIO(off.data)))
    assert colour_error(default, band) < 6 < 40 < colour_error(plain, band)
    assert np.array_equal(default[..., 3], plain[..., 3])


@pytest.mark.parametrize(
    "options",
    [
        {"format": "webp"},
        {"bg_color": (0, 0, 255, 255)},
        {"format": "jpg"},
        {"crop": True},
    ],
)
def test_other_outputs_show_the_cleaned_colours_too(options):
    alpha = disc_alpha()
    img, mask = photograph(alpha), as_mask(alpha)
    cleaned = finish(img, mask, OutputOptions(**options))
    plain = finish(img, mask, OutputOptions(decontaminate=False, **options))
    assert cleaned.data != plain.data
    assert (cleaned.width, cleaned.height) == (plain.width, plain.height)
    got = Image.open(io.BytesIO(cleaned.data))
    got.load()
    assert got.size == (cleaned.width, cleaned.height)


def test_a_mask_alone_and_alpha_matting_are_not_cleaned_twice():
    alpha = disc_alpha()
    img, mask = photograph(alpha), as_mask(alpha)
    for fields in ({"channels": "alpha"}, {"alpha_matting": True}):
        on = finish(img, mask, OutputOptions(**fields))
        off = finish(img, mask, OutputOptions(decontaminate=False, **fields))
        assert on.data == off.data


def test_refine_edges_changes_only_the_soft_band_of_the_mask():
    truth = disc_alpha(blur=0.7)
    img, mask = photograph(truth), as_mask(disc_alpha(blur=8.0))
    out = finish(img, mask, OutputOptions(refine="edges", channels="alpha"))
    refined = np.asarray(Image.open(io.BytesIO(out.data)))
    assert np.array_equal(refined, np.asarray(edges.refine_edges(img, mask)))
    assert not np.array_equal(refined, np.asarray(mask))


def test_the_summary_names_the_edge_options_that_differ():
    from imaging.options import summarize

    assert summarize(options={}, output_format="png") == "PNG · full size, transparent"
    words = summarize(options={"decontaminate": False, "refine": "edges"}, output_format="png")
    assert words == "PNG · edge colours as photographed · edges refined"
