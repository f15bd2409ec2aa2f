"""HEIC/HEIF, TIFF and AVIF in: sniffed, upright, first image only, limits
from the header before any decode, damage refused before the charge."""

import io
import struct
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageFile

from imaging import errors, reading
from imaging.formats import INPUT_FORMATS, SUPPORTED_NAMES, sniff_format
from tests.images import encode, photo
from tests.imaging.mutants import SOURCES

PILLOW_IDS = {"heic": "HEIF", "tiff": "TIFF", "avif": "AVIF"}


def chelsea() -> Image.Image:
    return photo("chelsea")  # 451 x 300


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def test_the_new_formats_are_rows_of_the_input_table_and_named_in_refusals():
    for name in PILLOW_IDS:
        assert name in INPUT_FORMATS
    assert SUPPORTED_NAMES == "png, jpg, jpeg, webp, bmp, heic, heif, tiff, tif, avif"
    assert "gif" not in SUPPORTED_NAMES


@pytest.mark.parametrize("fmt", PILLOW_IDS)
def test_each_format_is_sniffed_from_its_bytes_and_read_at_its_size(fmt):
    data = encode(chelsea(), PILLOW_IDS[fmt])
    assert sniff_format(data[:64]) == fmt
    info = reading.inspect_image(data, max_pixels=10**7)
    assert (info.format, info.width, info.height) == (fmt, 451, 300)
    img = reading.decode_for_model(data, max_pixels=10**7)
    assert img.size == (451, 300) and img.mode == "RGB"
    # The picture itself, not just its size (AVIF and HEIC are lossy).
    error = np.abs(np.asarray(img, float) - np.asarray(chelsea(), float)).mean()
    assert error < 6, error


def test_an_avif_whose_major_brand_is_the_generic_heif_one_is_still_avif():
    data = bytearray(encode(chelsea(), "AVIF"))
    assert data[8:12] == b"avif"
    data[8:12] = b"mif1"  # major brand mif1, avif among the compatible ones
    assert b"avif" in data[16:32]
    assert sniff_format(bytes(data[:64])) == "avif"
    heic = bytearray(encode(chelsea(), "HEIF"))
    assert sniff_format(bytes(heic[:64])) == "heic"


@pytest.mark.parametrize("fmt", PILLOW_IDS)
def test_exif_orientation_is_honoured(fmt):
    data = encode(chelsea(), PILLOW_IDS[fmt], exif=exif_orientation(6))
    upright = chelsea().transpose(Image.Transpose.ROTATE_270)
    info = reading.inspect_image(data, max_pixels=10**7)
    assert (info.width, info.height) == (300, 451)
    img = reading.decode_for_model(data, max_pixels=10**7)
    assert img.size == (300, 451)
    error = np.abs(np.asarray(img, float) - np.asarray(upright, float)).mean()
    assert error < 6, error


def test_a_multi_page_tiff_is_read_for_its_first_page():
    first = chelsea()
    second = Image.new("RGB", (800, 800), (0, 255, 0))
    data = encode(first, "TIFF", save_all=True, append_images=[second])
    info = reading.inspect_image(data, max_pixels=10**7)
    assert (info.width, info.height) == (451, 300)
    img = reading.decode_for_model(data, max_pixels=10**7)
    assert np.array_equal(np.asarray(img), np.asarray(first))


def test_sixteen_bit_cmyk_and_float_tiffs_are_read_as_pictures():
    grey16 = Image.fromarray((np.arange(64 * 48, dtype=np.uint16) * 20).reshape(48, 64))
    floats = Image.fromarray(np.linspace(-1, 3, 64 * 48, dtype=np.float32).reshape(48, 64))
    cmyk = chelsea().convert("CMYK")
    for img in (grey16, floats, cmyk):
        data = encode(img, "TIFF")
        out = reading.decode_for_model(data, max_pixels=10**7)
        assert out.mode == "RGB" and out.size == img.size
        assert np.asarray(out).std() > 5  # not flattened to one grey


def test_transparency_is_kept_in_each_format():
    rgba = chelsea().convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    for fmt in PILLOW_IDS.values():
        data = encode(rgba, fmt)
        assert reading.inspect_image(data, max_pixels=10**7).has_alpha, fmt
        out = reading.decode_for_model(data, max_pixels=10**7)
        assert out.mode == "RGBA", fmt
        assert np.asarray(out)[..., 3].std() > 20, fmt


# --- limits from the header, before any decode --------------------------------


@pytest.mark.parametrize("fmt", PILLOW_IDS)
def test_too_many_pixels_is_refused_from_the_header_without_decoding(fmt):
    data = encode(chelsea(), PILLOW_IDS[fmt])  # 135,300 pixels
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")):
        with pytest.raises(errors.TooManyPixels):
            reading.inspect_image(data, max_pixels=100_000)
        with pytest.raises(errors.TooManyPixels):
            reading.decode_for_model(data, max_pixels=100_000)


def test_an_avif_declaring_an_absurd_size_is_refused_unread():
    data = encode(chelsea(), "AVIF")
    at = data.index(b"ispe")  # the image-size property: width, height
    bomb = data[: at + 8] + struct.pack(">II", 16000, 16000) + data[at + 16 :]
    unread = mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded"))
    with unread, pytest.raises(errors.TooManyPixels):
        reading.inspect_image(bomb, max_pixels=50_000_000)


def test_a_tiff_declaring_too_many_pixels_is_refused_unread():
    data = bytearray(encode(chelsea(), "TIFF"))
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            packed = struct.pack("<HH", 9000, 0) if kind == 3 else struct.pack("<I", 9000)
            data[entry + 8 : entry + 12] = packed
    unread = mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded"))
    with unread, pytest.raises(errors.TooManyPixels, match="9000x9000"):
        reading.inspect_image(bytes(data), max_pixels=50_000_000)


@pytest.mark.parametrize("fmt", PILLOW_IDS)
def test_a_too_long_side_is_refused_from_the_header(fmt):
    data = encode(Image.new("RGB", (1200, 16), "white"), PILLOW_IDS[fmt])
    with pytest.raises(errors.SideTooLong):
        reading.inspect_image(data, max_pixels=10**7, max_side=1000)


# Damage inside the coded pixels may decode to a wrong picture rather than
# fail: tests/removal/test_pipeline_fuzz.py holds such files to "refused, or
# completes in the worker". Here: files that cannot be read at all.
@pytest.mark.parametrize("fmt", PILLOW_IDS)
@pytest.mark.parametrize("damage", ["truncated", "header"])
def test_a_corrupt_file_of_each_kind_is_refused_in_words(fmt, damage):
    data = encode(chelsea(), PILLOW_IDS[fmt])
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        data = data[:12] + b"\xff" * 40 + data[52:]
    with pytest.raises(errors.UndecodableImage) as refused:
        reading.inspect_image(data, max_pixels=10**7)
    message = str(refused.value)
    assert INPUT_FORMATS[fmt].display in message and "0x" not in message


# The clean aperture (clap) crops a HEIC's coded picture (ispe, 72x64 for the
# fuzzer's 72x48 sources) to the image; its fields, each a 32-bit fraction:
# width, height, horizontal and vertical offset of the centre.
CLAP_FIELDS = {"width": 0, "height": 1, "horizontal offset": 2}


def with_clap_field(data: bytes, field: str, value: int) -> bytes:
    at = data.index(b"clap") + 4 + 8 * CLAP_FIELDS[field]  # the numerator
    return data[:at] + struct.pack(">i", value) + data[at + 4 :]


# The fuzzer's "72 != 200" (heic-rgba, fresh set; FUZZ_SEED=6 gives "64 !=
# 48"): a damaged clap declares a crop the picture cannot hold. libheif's
# header size is the crop as declared; its decode clamps the crop to the
# picture. The check had promised the header's size, the worker decoded another.
@pytest.mark.parametrize("source", ["heic-rgba", "heic-exif"])
@pytest.mark.parametrize(
    "field, value", [("width", 200), ("height", 241), ("horizontal offset", 100)]
)
def test_a_heic_whose_crop_does_not_fit_its_picture_decodes_at_the_size_promised(
    source, field, value
):
    _, make = SOURCES[source]
    data = with_clap_field(make(), field, value)
    declared = Image.open(io.BytesIO(data)).size
    info = reading.inspect_image(data, max_pixels=10**6)
    img = reading.decode_for_model(data, max_pixels=10**6)
    assert img.size != declared  # the damage does reach the decoder's clamp
    assert img.size == (info.width, info.height)
    assert img.mode == ("RGBA" if source == "heic-rgba" else "RGB")


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_every_picture_a_heif_file_declares_is_found(fmt):
    data = encode(chelsea(), PILLOW_IDS[fmt])  # 451x300
    width, height = Image.open(io.BytesIO(data)).size
    # The coded picture holds the image (HEVC's 4:2:0 pads it to 452 wide).
    assert any(
        width <= w <= width + 16 and height <= h <= height + 16
        for w, h in reading.declared_pictures(data)
    )


def test_a_small_crop_of_a_huge_picture_is_refused_before_it_is_decoded():
    """The header's size is the crop (clap); the decode builds the picture
    (ispe): a 72x48 crop of a declared 30000x30000 picture is refused unread."""
    _, make = SOURCES["heic-rgba"]
    data = make()
    at = data.index(b"ispe") + 8
    huge = data[:at] + struct.pack(">II", 30000, 30000) + data[at + 8 :]
    assert Image.open(io.BytesIO(huge)).size == (72, 48)  # what the header says
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")):
        with pytest.raises(errors.TooManyPixels):
            reading.inspect_image(huge, max_pixels=10**7)
        with pytest.raises(errors.SideTooLong):
            reading.inspect_image(huge, max_pixels=10**10, max_side=12000)


def test_gif_is_still_refused():
    gif = encode(chelsea(), "GIF")
    with pytest.raises(errors.UnsupportedFormat, match="gif"):
        reading.inspect_image(gif, max_pixels=10**7)


def test_pillow_features_say_where_each_decoder_comes_from():
    from PIL import features

    assert features.check("avif")  # Pillow's own AVIF
    assert "HEIF" in Image.OPEN  # pillow-heif's plugin, registered by imaging.reading
    assert features.check("libtiff")
    assert io  # (imported for encode's buffers)
