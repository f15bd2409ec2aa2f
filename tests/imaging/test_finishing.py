"""The pixels finish() makes of an image, a mask and the output options.

The first part uses a real photo with a mask drawn here (a soft-edged
ellipse), so every expected pixel is known; the ``model`` part runs the
real u2netp on real photos through ``pipeline.remove_background``.
"""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from imaging import (
    edges,
    errors,
    finishing,
    matting,
    model,
    parsers,
    pipeline,
    png,
    reading,
    subject,
)
from imaging.finishing import finish
from imaging.options import OutputOptions
from imaging.parsers import Length
from tests.images import decode, encode, photo

# --- A photo and a mask with a known subject ----------------------------------

WIDTH, HEIGHT = 600, 400  # skimage's coffee
SUBJECT = (150, 80, 430, 330)  # the ellipse's box before blurring


def soft_mask(box=SUBJECT, size=(WIDTH, HEIGHT), blur=3) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask


@pytest.fixture
def img():
    return photo("coffee").convert("RGB")


@pytest.fixture
def mask():
    return soft_mask()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(decode(data))


def alpha_of(data: bytes) -> np.ndarray:
    return np.asarray(decode(data).convert("RGBA"))[..., 3]


def box_of(alpha: np.ndarray):
    return subject.subject_box(Image.fromarray(alpha, "L"))


# --- finish() on a known mask ---------------------------------------------------


def test_without_edge_cleaning_the_plain_png_is_byte_for_byte_the_old_one(img, mask):
    expected = png.encode_png(finishing.cutout_pixels(img, mask))
    assert finish(img, mask, OutputOptions(decontaminate=False)).data == expected


def test_default_options_give_the_edge_cleaned_png(img, mask):
    # Edge cleaning is on by default (issue 20): the default PNG is the
    # cleaned cut-out, its alpha exactly the mask's, its colours the photo's
    # wherever the mask is not soft.
    expected = png.encode_png(edges.clean_cutout(img, mask))
    finished = finish(img, mask)
    assert finished.data == expected
    plain = finishing.cutout_pixels(img, mask)
    cleaned = pixels(finished.data)
    assert np.array_equal(cleaned[..., 3], plain[..., 3])
    solid = np.asarray(mask) > edges.BAND_MAX
    assert np.array_equal(cleaned[solid], plain[solid])
    assert (finished.format, finished.content_type, finished.extension) == (
        "png",
        "image/png",
        "png",
    )
    assert (finished.width, finished.height) == (WIDTH, HEIGHT)


def test_finish_leaves_the_callers_image_alone(img, mask):
    before = np.asarray(img).copy()
    finish(img, mask, OutputOptions(alpha_matting=True, bg_color=(0, 0, 0, 255)))
    finish(img, mask)
    assert img.mode == "RGB"
    assert np.array_equal(np.asarray(img), before)


def test_foreground_is_the_box_of_visible_alpha_in_output_pixels(img, mask):
    finished = finish(img, mask)
    alpha = alpha_of(finished.data)
    ys, xs = np.nonzero(alpha >= subject.FOREGROUND_MIN_ALPHA)
    assert finished.foreground == {
        "top": ys.min(),
        "left": xs.min(),
        "width": xs.max() + 1 - xs.min(),
        "height": ys.max() + 1 - ys.min(),
    }


def test_an_empty_mask_has_no_foreground(img):
    assert finish(img, Image.new("L", img.size, 0)).foreground is None


def test_bg_color_fills_the_background_exactly(img, mask):
    finished = finish(img, mask, OutputOptions(bg_color=(12, 34, 56, 255)))
    out = pixels(finished.data)
    assert out.shape == (HEIGHT, WIDTH, 4)
    assert tuple(out[0, 0]) == (12, 34, 56, 255)
    assert (out[..., 3] == 255).all()
    # Inside the subject the photo's own colours are kept.
    assert tuple(out[205, 290, :3]) == tuple(np.asarray(img)[205, 290])
    assert finished.foreground == finish(img, mask).foreground


def test_a_translucent_bg_color_stays_translucent_in_png_and_webp(img, mask):
    for fmt in ("png", "webp"):
        out = pixels(finish(img, mask, OutputOptions(format=fmt, bg_color=(255, 0, 0, 128))).data)
        assert tuple(out[0, 0]) == (255, 0, 0, 128)
        assert out[205, 290, 3] == 255


def test_jpg_has_no_alpha_and_is_flattened_on_white_by_default(img, mask):
    finished = finish(img, mask, OutputOptions(format="jpg"))
    out = decode(finished.data)
    assert (out.format, out.mode, finished.content_type) == ("JPEG", "RGB", "image/jpeg")
    assert np.abs(np.asarray(out)[:20, :20].astype(int) - 255).max() <= 3


def test_jpg_is_flattened_on_bg_color(img, mask):
    out = decode(finish(img, mask, OutputOptions(format="jpg", bg_color=(0, 0, 255, 255))).data)
    assert np.abs(np.asarray(out)[:20, :20].astype(int) - (0, 0, 255)).max() <= 3


def test_webp_is_lossless_with_alpha(img, mask):
    png = pixels(finish(img, mask).data)
    finished = finish(img, mask, OutputOptions(format="webp"))
    out = decode(finished.data)
    assert (out.format, out.mode, finished.extension) == ("WEBP", "RGBA", "webp")
    webp = np.asarray(out)
    assert np.array_equal(webp[..., 3], png[..., 3])
    visible = png[..., 3] > 0
    assert np.array_equal(webp[visible], png[visible])


def test_zip_holds_color_jpg_and_alpha_png_at_the_output_size(img, mask):
    finished = finish(img, mask, OutputOptions(format="zip"))
    assert (finished.content_type, finished.extension) == ("application/zip", "zip")
    with zipfile.ZipFile(io.BytesIO(finished.data)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        colour = decode(archive.read("color.jpg"))
        alpha = decode(archive.read("alpha.png"))
    assert (colour.format, colour.mode, colour.size) == ("JPEG", "RGB", (WIDTH, HEIGHT))
    assert (alpha.format, alpha.mode, alpha.size) == ("PNG", "L", (WIDTH, HEIGHT))
    assert np.array_equal(np.asarray(alpha), alpha_of(finish(img, mask).data))


def test_mask_only_is_the_alpha_of_the_default_output_in_grayscale(img, mask):
    finished = finish(img, mask, OutputOptions(channels="alpha"))
    out = decode(finished.data)
    assert out.mode == "L"
    assert np.array_equal(np.asarray(out), alpha_of(finish(img, mask).data))


@pytest.mark.parametrize(
    "options",
    [
        {"crop": True, "crop_margin": parsers.parse_crop_margin("10px 20%")},
        {"scale": 50.0},
        {"position": (0.0, 0.0), "max_width": 300},
        {"alpha_matting": True},
        {"roi": parsers.parse_roi("0 0 50% 50%"), "post_process_mask": True},
    ],
)
def test_mask_only_is_the_alpha_of_the_same_options_in_rgba(img, mask, options):
    rgba = finish(img, mask, OutputOptions(**options))
    alpha = finish(img, mask, OutputOptions(channels="alpha", **options))
    assert np.array_equal(np.asarray(decode(alpha.data)), alpha_of(rgba.data))
    assert (alpha.width, alpha.height, alpha.foreground) == (
        rgba.width,
        rgba.height,
        rgba.foreground,
    )


def test_mask_only_respects_the_inputs_own_alpha(img, mask):
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.new("L", img.size, 128))
    out = np.asarray(decode(finish(rgba, mask, OutputOptions(channels="alpha")).data))
    assert np.array_equal(out, alpha_of(finish(rgba, mask).data))
    assert out.max() <= 128


def test_crop_cuts_to_the_subject_box_plus_the_margin(img, mask):
    default = pixels(finish(img, mask).data)
    left, top, right, bottom = box_of(default[..., 3])
    options = OutputOptions(crop=True, crop_margin=parsers.parse_crop_margin("10px 5%"))
    finished = finish(img, mask, options)
    out = pixels(finished.data)
    mx = round(0.05 * (right - left))
    assert (finished.width, finished.height) == (right - left + 2 * mx, bottom - top + 20)
    assert np.array_equal(out, default[top - 10 : bottom + 10, left - mx : right + mx])
    assert finished.foreground == {
        "top": 10,
        "left": mx,
        "width": right - left,
        "height": bottom - top,
    }


def test_crop_without_margin_is_the_subject_box_itself(img, mask):
    default = pixels(finish(img, mask).data)
    left, top, right, bottom = box_of(default[..., 3])
    out = pixels(finish(img, mask, OutputOptions(crop=True)).data)
    assert np.array_equal(out, default[top:bottom, left:right])


def test_crop_margin_is_capped_at_half_the_subject_and_pads_past_the_edge(img):
    small = soft_mask((5, 5, 45, 25), blur=0)  # a 41x21 subject in the corner
    left, top, right, bottom = subject.subject_box(small)
    options = OutputOptions(crop=True, crop_margin=parsers.parse_crop_margin("90%"))
    finished = finish(img, small, options)
    w, h = right - left, bottom - top
    assert (finished.width, finished.height) == (w + 2 * round(w / 2), h + 2 * round(h / 2))
    assert pixels(finished.data)[0, 0, 3] == 0  # padding past the image is transparent


def test_crop_margin_is_capped_at_500_px(img):
    big = Image.new("L", (1400, 1300), 0)
    big.paste(255, (100, 100, 1300, 1200))
    canvas = Image.new("RGB", big.size, (9, 9, 9))
    finished = finish(canvas, big, OutputOptions(crop=True, crop_margin=(Length(900.0),) * 4))
    assert (finished.width, finished.height) == (1200 + 1000, 1100 + 1000)


def test_crop_with_no_subject_fails_the_job_with_a_clear_message(img):
    with pytest.raises(errors.NoSubjectFound) as caught:
        finish(img, Image.new("L", img.size, 0), OutputOptions(crop=True))
    assert isinstance(caught.value, errors.PipelineError)
    assert str(caught.value) == "No subject was found to crop to."


def test_roi_zeroes_the_mask_outside_it(img, mask):
    roi = parsers.parse_roi("0% 0% 50% 100%")
    alpha = alpha_of(finish(img, mask, OutputOptions(roi=roi)).data)
    plain = alpha_of(finish(img, mask).data)
    assert (alpha[:, 300:] == 0).all()
    assert np.array_equal(alpha[:, :300], plain[:, :300])
    assert plain[:, 300:].any()


def test_roi_in_pixels(img, mask):
    alpha = alpha_of(
        finish(img, mask, OutputOptions(roi=parsers.parse_roi("200 100 300 200"))).data
    )
    assert subject.subject_box(Image.fromarray(alpha)) == (200, 100, 300, 200)


def test_preview_fits_quarter_megapixel_and_keeps_the_aspect_ratio():
    big = photo("coffee").resize((1500, 1000))
    finished = finish(big, soft_mask(size=big.size), OutputOptions(max_pixels=250_000))
    assert finished.width * finished.height <= 250_000
    assert abs(finished.width / finished.height - 1.5) < 0.01
    assert decode(finished.data).size == (finished.width, finished.height)


def test_size_limits_never_upscale(img, mask):
    finished = finish(img, mask, OutputOptions(max_pixels=4_000_000, max_width=5000))
    assert (finished.width, finished.height) == (WIDTH, HEIGHT)


def test_max_width_and_max_height_fit_within_both(img, mask):
    finished = finish(img, mask, OutputOptions(max_width=300, max_height=100))
    assert (finished.width, finished.height) == (150, 100)
    finished = finish(img, mask, OutputOptions(max_width=300))
    assert (finished.width, finished.height) == (300, 200)


def test_foreground_follows_the_resize(img, mask):
    full = finish(img, mask).foreground
    half = finish(img, mask, OutputOptions(max_width=300)).foreground
    for key in ("top", "left"):
        assert half[key] == full[key] // 2
    for key in ("width", "height"):
        assert abs(half[key] - full[key] / 2) <= 1.5


def test_scale_shrinks_the_subject_and_centres_it_by_default(img, mask):
    left, top, right, bottom = box_of(alpha_of(finish(img, mask).data))
    sw, sh = right - left, bottom - top
    finished = finish(img, mask, OutputOptions(scale=50.0))
    assert (finished.width, finished.height) == (WIDTH, HEIGHT)
    fg = finished.foreground
    factor = 0.5 * min(WIDTH / sw, HEIGHT / sh)
    assert abs(fg["height"] - sh * factor) <= 2 and abs(fg["width"] - sw * factor) <= 2
    assert abs(fg["left"] + fg["width"] / 2 - WIDTH / 2) <= 2
    assert abs(fg["top"] + fg["height"] / 2 - HEIGHT / 2) <= 2


def test_position_places_the_subject_in_the_free_space(img, mask):
    fg = finish(img, mask, OutputOptions(position=(0.0, 100.0))).foreground
    assert fg["left"] == 0
    assert fg["top"] + fg["height"] == HEIGHT


def test_position_original_without_scale_changes_nothing(img, mask):
    assert (
        finish(img, mask, OutputOptions(position="original", format="webp")).data
        == finish(img, mask, OutputOptions(format="webp")).data
    )


def test_crop_with_scale_scales_within_the_cropped_canvas(img, mask):
    cropped = finish(img, mask, OutputOptions(crop=True))
    scaled = finish(img, mask, OutputOptions(crop=True, scale=50.0))
    assert (scaled.width, scaled.height) == (cropped.width, cropped.height)
    assert abs(scaled.foreground["width"] - cropped.width / 2) <= 2


def test_post_process_mask_is_rembgs():
    from rembg.bg import post_process

    noisy = np.asarray(soft_mask(blur=6)).copy()
    rng = np.random.default_rng(1)
    noisy[rng.random(noisy.shape) < 0.01] = 255
    ours = np.asarray(matting.post_process_mask(Image.fromarray(noisy)))
    theirs = post_process(noisy)
    assert (ours != theirs).mean() < 1e-4
    assert set(np.unique(ours)) <= {0, 255}


@pytest.mark.parametrize("erode", [0, 1, 10])
def test_trimap_is_rembgs(erode):
    from scipy.ndimage import binary_erosion

    m = np.asarray(soft_mask(blur=8))
    structure = np.ones((erode, erode), dtype=np.uint8) if erode else None
    fg = binary_erosion(m > 240, structure=structure)
    bg = binary_erosion(m < 10, structure=structure, border_value=1)
    expected = np.full(m.shape, 128, dtype=np.uint8)
    expected[fg], expected[bg] = 255, 0
    ours = matting.trimap(
        Image.fromarray(m), foreground_threshold=240, background_threshold=10, erode_size=erode
    )
    assert np.array_equal(ours, expected)


def test_alpha_matting_keeps_sure_pixels_and_changes_only_the_unknown_band(img, mask):
    wide = soft_mask(blur=8)
    tri = matting.trimap(wide, foreground_threshold=240, background_threshold=10, erode_size=10)
    matted = alpha_of(finish(img, wide, OutputOptions(alpha_matting=True)).data)
    assert (matted[tri == 255] == 255).all()
    assert (matted[tri == 0] == 0).all()
    band = tri == 128
    assert np.abs(matted[band].astype(int) - np.asarray(wide)[band]).max() > 20


def test_alpha_matting_of_an_empty_mask_finds_nothing(img):
    finished = finish(img, Image.new("L", img.size, 0), OutputOptions(alpha_matting=True))
    assert finished.foreground is None
    assert (alpha_of(finished.data) == 0).all()


def test_alpha_matting_with_no_sure_background_keeps_the_mask(img):
    soft = Image.new("L", img.size, 128)
    assert np.array_equal(
        alpha_of(finish(img, soft, OutputOptions(alpha_matting=True)).data), np.asarray(soft)
    )


def test_alpha_matting_solves_large_images_on_a_smaller_copy(img, monkeypatch):
    monkeypatch.setattr(matting, "MATTING_MAX_PIXELS", 30_000)
    wide = soft_mask(blur=8)
    tri = matting.trimap(wide, foreground_threshold=240, background_threshold=10, erode_size=10)
    matted = alpha_of(finish(img, wide, OutputOptions(alpha_matting=True)).data)
    assert (matted[tri == 255] == 255).all() and (matted[tri == 0] == 0).all()
    assert matted.shape == (HEIGHT, WIDTH)


def test_finish_reports_its_stages_and_can_be_stopped(img, mask):
    seen = []
    finish(
        img,
        mask,
        OutputOptions(alpha_matting=True, format="jpg"),
        on_step=lambda p, m: seen.append(p),
    )
    assert seen == [60, 80, 90]

    class Stop(Exception):
        pass

    def check():
        raise Stop

    with pytest.raises(Stop):
        finish(img, mask, OutputOptions(alpha_matting=True), check=check)


# --- The real model on real photos ----------------------------------------------


def run(data: bytes, session, **options):
    return pipeline.remove_background(
        data, session, max_pixels=50_000_000, options=OutputOptions(**options)
    )


@pytest.fixture(scope="module")
def coffee(u2netp):
    data = encode(photo("coffee"), "JPEG", quality=90)
    return data, run(data, u2netp)


@pytest.mark.model
def test_default_options_give_the_cleaned_cutout_and_without_cleaning_the_old_png(u2netp):
    data = encode(photo("astronaut"), "JPEG", quality=90)
    img = reading.decode_for_model(data, max_pixels=10**9)
    mask = model.predict_mask(img, u2netp)
    old = png.encode_png(finishing.cutout_pixels(img, mask))
    plain = pipeline.remove_background(
        data, u2netp, max_pixels=10**9, options=OutputOptions(decontaminate=False)
    )
    assert plain.data == old
    # The default (issue 20): the same mask, the soft band's colours cleaned.
    cutout = pipeline.remove_background(data, u2netp, max_pixels=10**9)
    assert cutout.data == png.encode_png(edges.clean_cutout(img, mask))
    assert np.array_equal(alpha_of(cutout.data), alpha_of(old))
    assert (cutout.format, cutout.content_type, cutout.extension) == ("png", "image/png", "png")
    assert (cutout.width, cutout.height) == (512, 512)
    assert cutout.foreground is not None


@pytest.mark.model
def test_model_bg_color_is_exact_where_the_background_was(u2netp, coffee):
    data, default = coffee
    transparent = alpha_of(default.data) == 0
    assert transparent.any()
    out = pixels(run(data, u2netp, bg_color=(0, 255, 0, 255)).data)
    assert (out[transparent] == (0, 255, 0, 255)).all()
    ys, xs = np.nonzero(transparent)
    corner = (ys[0], xs[0])
    assert tuple(out[corner]) == (0, 255, 0, 255)


@pytest.mark.model
def test_model_mask_only_equals_the_alpha_of_the_default_output(u2netp, coffee):
    data, default = coffee
    out = decode(run(data, u2netp, channels="alpha").data)
    assert out.mode == "L"
    assert np.array_equal(np.asarray(out), alpha_of(default.data))


@pytest.mark.model
def test_model_crop_box_is_the_alpha_box_plus_the_margin(u2netp, coffee):
    data, default = coffee
    alpha = alpha_of(default.data)
    left, top, right, bottom = box_of(alpha)
    cutout = run(data, u2netp, crop=True, crop_margin=parsers.parse_crop_margin("20px"))
    assert (cutout.width, cutout.height) == (right - left + 40, bottom - top + 40)
    padded = np.pad(alpha, 20)
    assert np.array_equal(alpha_of(cutout.data), padded[top : bottom + 40, left : right + 40])
    assert cutout.foreground == {
        "top": 20,
        "left": 20,
        "width": right - left,
        "height": bottom - top,
    }


@pytest.mark.model
def test_model_preview_is_at_most_a_quarter_megapixel_with_the_aspect_kept(u2netp):
    data = encode(photo("coffee").resize((1200, 800)), "JPEG", quality=90)
    cutout = run(data, u2netp, max_pixels=parsers.parse_size("preview"))
    out = decode(cutout.data)
    assert out.size == (cutout.width, cutout.height)
    assert out.width * out.height <= 250_000
    assert abs(out.width / out.height - 1.5) < 0.01


@pytest.mark.model
def test_model_webp_has_alpha_and_jpg_has_none(u2netp, coffee):
    data, default = coffee
    webp = decode(run(data, u2netp, format="webp").data)
    assert (webp.format, webp.mode) == ("WEBP", "RGBA")
    assert np.array_equal(np.asarray(webp)[..., 3], alpha_of(default.data))
    jpg = run(data, u2netp, format="jpg")
    assert (decode(jpg.data).format, decode(jpg.data).mode) == ("JPEG", "RGB")
    assert jpg.content_type == "image/jpeg"


@pytest.mark.model
def test_model_zip_holds_colour_and_alpha_of_the_output_size(u2netp, coffee):
    data, default = coffee
    cutout = run(data, u2netp, format="zip", max_width=300)
    with zipfile.ZipFile(io.BytesIO(cutout.data)) as archive:
        colour = decode(archive.read("color.jpg"))
        alpha = decode(archive.read("alpha.png"))
    assert colour.size == alpha.size == (300, 200) == (cutout.width, cutout.height)
    assert (colour.mode, alpha.mode) == ("RGB", "L")


@pytest.mark.model
def test_model_roi_zeroes_everything_outside_it(u2netp, coffee):
    data, default = coffee
    alpha = alpha_of(run(data, u2netp, roi=parsers.parse_roi("0 0 300px 100%")).data)
    plain = alpha_of(default.data)
    assert (alpha[:, 300:] == 0).all() and plain[:, 300:].any()
    assert np.array_equal(alpha[:, :300], plain[:, :300])


@pytest.mark.model
def test_model_matting_changes_the_mask_only_near_its_edges(u2netp):
    data = encode(photo("astronaut"), "JPEG", quality=90)
    plain = alpha_of(run(data, u2netp).data).astype(int)
    matted = alpha_of(run(data, u2netp, alpha_matting=True).data).astype(int)
    # The edge: where the plain mask is neither sure background (< 10) nor
    # sure foreground (> 240), grown by the erosion (10 px) plus one.
    uncertain = (plain >= 10) & (plain <= 240)
    near_edge = ndimage.binary_dilation(uncertain, structure=np.ones((23, 23), dtype=bool))
    difference = np.abs(matted - plain)
    assert difference[~near_edge].max() <= 15  # sure pixels only snap to 0 or 255
    assert (difference[near_edge] > 30).sum() > 100  # and the edge was refined
