"""Background images (cover, centred), hard edges without a halo, the layer stack."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imaging import layers
from imaging.finishing import finish
from imaging.formats import FORMATS
from imaging.layers import HARD_EDGE_THRESHOLD, cover, harden, harden_mask, stack
from imaging.options import OutputOptions
from imaging.shadows import cast_shadow
from tests.images import photo

DIGEST = "ab" * 32  # options.bg_image: any SHA-256 (the bytes travel apart)


def striped(size=(300, 100)) -> Image.Image:
    """Left third red, middle green, right third blue."""
    img = Image.new("RGB", size, (255, 0, 0))
    third = size[0] // 3
    img.paste((0, 255, 0), (third, 0, 2 * third, size[1]))
    img.paste((0, 0, 255), (2 * third, 0, size[0], size[1]))
    return img


def test_cover_scales_to_fill_and_cuts_the_overflow_evenly():
    out = cover(striped((300, 100)), (100, 100))
    assert out.size == (100, 100)
    # Only the middle third shows: green from edge to edge.
    pixels = np.asarray(out)
    assert (pixels[:, 5:95, 1] > 200).all() and (pixels[:, 5:95, 0] < 60).all()


def test_cover_enlarges_a_small_background_and_keeps_one_of_the_right_size():
    small = striped((30, 10))
    assert cover(small, (600, 600)).size == (600, 600)
    same = striped((200, 100))
    assert cover(same, (200, 100)) is same


def soft_red_square_on_green() -> Image.Image:
    """A red square whose edge pixels mix in the green they were cut from."""
    size = 64
    alpha = np.zeros((size, size), np.uint8)
    alpha[16:48, 16:48] = 255
    alpha[15, 15:49] = alpha[48, 15:49] = alpha[15:49, 15] = alpha[15:49, 48] = 160
    alpha[14, 14:50] = alpha[49, 14:50] = alpha[14:50, 14] = alpha[14:50, 49] = 60
    rgb = np.zeros((size, size, 3), np.uint8)
    mix = alpha.astype(np.float64)[..., None] / 255
    rgb[:] = (mix * [255, 0, 0] + (1 - mix) * [0, 255, 0]).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def test_hard_edges_are_opaque_or_clear_with_no_halo_of_the_old_background():
    hard = np.asarray(harden(soft_red_square_on_green()))
    assert set(np.unique(hard[..., 3])) == {0, 255}
    # 160 >= threshold: kept, and red like the inside, not the green mix.
    assert hard[15, 30, 3] == 255
    assert hard[15, 30, 1] < 10 and hard[15, 30, 0] > 245
    # 60 < threshold: gone, colour and all.
    assert (hard[14, 30] == 0).all()
    assert HARD_EDGE_THRESHOLD == 128


def test_hard_edges_take_the_inside_colour_when_no_pixel_is_fully_opaque():
    """An upscaled mask seldom reaches 255 (most of a 12 MP subject reads
    250-254): the inside still lends its colour to the edge."""
    soft = np.array(soft_red_square_on_green())
    soft[..., 3] = np.where(soft[..., 3] == 255, 252, soft[..., 3])
    hard = np.asarray(harden(Image.fromarray(soft, "RGBA")))
    assert hard[15, 30, 3] == 255 and hard[15, 30, 1] < 10 and hard[15, 30, 0] > 245
    assert tuple(hard[30, 30]) == (255, 0, 0, 255)  # the inside keeps its own colour


def test_the_compiled_pass_and_numpy_give_the_same_pixels():
    img = photo("astronaut").resize((200, 200))
    alpha = Image.radial_gradient("L").resize(img.size).point(lambda v: 255 - v)
    rgba = img.convert("RGBA")
    rgba.putalpha(alpha)
    assert layers._harden_rows() is not None  # numba builds here
    compiled = np.asarray(harden(rgba))
    assert np.array_equal(compiled, layers._harden_numpy(np.asarray(rgba)))
    levels = np.asarray(alpha)
    edge = (levels >= HARD_EDGE_THRESHOLD) & (levels < layers.SOLID_ALPHA)
    assert edge.sum() > 1000  # the pull was exercised, not just the threshold
    assert (compiled[edge][:, :3] != np.asarray(rgba)[edge][:, :3]).any()


def test_a_hard_mask_is_black_or_white():
    mask = Image.linear_gradient("L")
    assert set(np.unique(np.asarray(harden_mask(mask)))) == {0, 255}


def test_the_stack_puts_the_shadow_between_background_and_subject():
    subject = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    subject.paste((250, 250, 250, 255), (30, 20, 70, 60))
    shadow = cast_shadow(subject.getchannel("A"), (30, 20, 70, 60), "drop", 0.5)
    out = np.asarray(stack(subject, shadow=shadow, bg_color=(0, 0, 255, 255)))
    assert tuple(out[40, 50]) == (250, 250, 250, 255)  # the subject on top
    assert tuple(out[2, 2]) == (0, 0, 255, 255)  # plain background far away
    x, y = np.unravel_index(np.argmin(out[..., 2] + 1000 * (out[..., 0] > 200)), out.shape[:2])
    assert out[x, y, 2] < 200  # the shadow darkens the blue beside it
    transparent = np.asarray(stack(subject, shadow=shadow))
    outside = transparent[..., 3] > 0
    outside[20:60, 30:70] = False
    # Without a background the shadow is black at its own opacity.
    assert outside.any() and (transparent[outside][:, :3] == 0).all()
    assert transparent[outside][:, 3].max() <= 128


@pytest.mark.parametrize("kind", ["drop", "3D", "car"])
@pytest.mark.parametrize("bg_color", [None, (0, 90, 200, 255), (0, 90, 200, 128)])
def test_each_stack_gives_the_pixels_of_compositing_every_layer_whole(kind, bg_color):
    """The fast paths (the shadow's box only; an opaque base drawn on in
    place) against the plain definition: full-size RGBA layers composited."""
    img, mask = astronaut_and_mask()
    subject = img.convert("RGBA")
    subject.putalpha(mask.filter(ImageFilter.GaussianBlur(3)))
    shadow = cast_shadow(subject.getchannel("A"), (60, 40, 200, 230), kind, 0.6)
    dark = Image.new("RGBA", subject.size, (0, 0, 0, 0))
    dark.putalpha(shadow.layer(subject.size))
    base = dark
    if bg_color is not None:
        base = Image.alpha_composite(Image.new("RGBA", subject.size, bg_color), dark)
    want = np.asarray(Image.alpha_composite(base, subject), dtype=np.int32)
    got = np.asarray(stack(subject.copy(), shadow=shadow, bg_color=bg_color), dtype=np.int32)
    assert got.shape == want.shape
    # Pillow's two blends round apart; a clear pixel's colour is nobody's.
    assert np.abs(got[..., 3] - want[..., 3]).max() <= 1
    seen = want[..., 3] > 0
    assert np.abs(got[seen][:, :3] - want[seen][:, :3]).max() <= 1


def astronaut_and_mask():
    img = photo("astronaut").resize((256, 256))
    mask = Image.new("L", img.size, 0)
    mask.paste(255, (60, 40, 200, 230))
    return img, mask


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_background_image_fills_every_output_format(fmt):
    img, mask = astronaut_and_mask()
    background = striped((600, 200))
    result = finish(img, mask, OutputOptions(format=fmt, bg_image=DIGEST), background=background)
    assert result.format == fmt
    if fmt == "zip":
        return  # color.jpg + alpha.png of the same layers (codecs' own tests)
    out = np.asarray(Image.open(io.BytesIO(result.data)).convert("RGBA"), dtype=np.int32)
    # Outside the subject: the middle (green) third of the background, opaque.
    assert out[5, 5, 1] > 180 and out[5, 5, 0] < 90 and out[5, 5, 3] == 255
    # Inside: the photo.
    assert np.abs(out[100, 120, :3] - np.asarray(img)[100, 120]).max() < 40


def test_a_background_image_follows_crop_scale_position_and_size():
    img, mask = astronaut_and_mask()
    background = striped((300, 100))
    options = OutputOptions(
        bg_image=DIGEST, crop=True, scale=50.0, position=(0.0, 0.0), max_width=70
    )
    result = finish(img, mask, options, background=background)
    out = np.asarray(Image.open(io.BytesIO(result.data)))
    # The crop (140 x 190) at most 70 wide; the background covers all of it.
    assert (result.width, result.height) == (70, 95)
    assert (out[..., 3] == 255).all()
    # The subject at half size in the top-left corner, the rest background.
    assert result.foreground["left"] == 0 and result.foreground["top"] == 0
    assert result.foreground["width"] == pytest.approx(35, abs=2)


def test_a_transparent_background_image_keeps_transparency_and_auto_stays_png():
    img, mask = astronaut_and_mask()
    see_through = Image.new("RGBA", (50, 50), (255, 0, 0, 100))
    result = finish(
        img, mask, OutputOptions(format="auto", bg_image=DIGEST), background=see_through
    )
    assert result.format == "png"
    opaque = finish(img, mask, OutputOptions(format="auto", bg_image=DIGEST), background=striped())
    assert opaque.format == "jpg"


def test_a_shadow_with_crop_grows_the_output_to_keep_it_whole():
    img, mask = astronaut_and_mask()
    plain = finish(img, mask, OutputOptions(crop=True))
    shaded = finish(img, mask, OutputOptions(crop=True, shadow_type="car"))
    assert (plain.width, plain.height) == (140, 190)
    assert shaded.height > plain.height and shaded.width >= plain.width
    alpha = np.asarray(Image.open(io.BytesIO(shaded.data)).getchannel("A"))
    # Nothing of the shadow cut at the new edges.
    assert alpha[-1].max() <= 3 and alpha[:, 0].max() <= 3 and alpha[:, -1].max() <= 3
    # The subject's box is reported where it now lies.
    assert shaded.foreground["width"] == 140 and shaded.foreground["height"] == 190


def test_a_shadow_lies_on_a_colour_and_without_crop_stays_inside_the_image():
    img, mask = astronaut_and_mask()
    result = finish(img, mask, OutputOptions(shadow_type="drop", bg_color=(255, 255, 255, 255)))
    out = np.asarray(Image.open(io.BytesIO(result.data)).convert("RGB"), dtype=np.int32)
    assert (result.width, result.height) == (256, 256)
    assert out[235, 150].max() < 240  # darker than the white around, below-right
    assert out[5, 5].min() == 255


def test_hard_edges_at_the_outputs_own_size():
    img, mask = astronaut_and_mask()
    soft = mask.resize((32, 32)).resize(mask.size, Image.Resampling.BILINEAR)
    result = finish(img, soft, OutputOptions(semitransparency=False, max_width=100))
    alpha = np.asarray(Image.open(io.BytesIO(result.data)).getchannel("A"))
    assert result.width == 100 and set(np.unique(alpha)) <= {0, 255}
    only_mask = finish(img, soft, OutputOptions(semitransparency=False, channels="alpha"))
    assert set(np.unique(np.asarray(Image.open(io.BytesIO(only_mask.data))))) <= {0, 255}


def test_a_hard_edged_subject_keeps_its_shadow_soft():
    img, mask = astronaut_and_mask()
    result = finish(img, mask, OutputOptions(semitransparency=False, shadow_type="drop"))
    alpha = np.asarray(Image.open(io.BytesIO(result.data)).getchannel("A"))
    assert len(set(np.unique(alpha)) - {0, 255}) > 10


def test_a_background_needs_its_image():
    img, mask = astronaut_and_mask()
    with pytest.raises(ValueError, match="no background"):
        finish(img, mask, OutputOptions(bg_image=DIGEST))
