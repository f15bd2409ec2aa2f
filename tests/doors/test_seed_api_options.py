"""The seed API's output options over HTTP, checked on the pixels.

Every test posts to ``POST /paid/image/remove/background`` with the real
u2netp on a real photo, lets ``inline_worker`` run the job (only the queue
hop is skipped), then reads ``GET /api/get/<id>`` and downloads the file
from ``/output/<file>`` as a customer would. Refusals are checked to come
before the charge; ``image_url`` refusals also before any connection.
"""

import io
import zipfile

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from scipy import ndimage

from imaging import formats, parsers
from imaging.options import SEED, SEED_SIZES, options_for
from removal.models import RemovalJob
from tests.conftest import ACCOUNT_CREDITS
from tests.doors.seed_requests import (
    PHOTO,
    URL,
    assert_refused,
    default_alpha,
    default_png,
    post,
    run,
    subject_box,
)
from tests.images import encode, photo

pytestmark = [pytest.mark.model]

WIDE = encode(photo("coffee").resize((1600, 1066)), "JPEG")  # 1.7 MP, 3:2


@pytest.fixture
def client(api_client, inline_worker):
    """The API client, with jobs run at once in this process."""
    return api_client


# --- Leaving the options out ------------------------------------------------------


def test_no_options_gives_the_pipelines_default_png_byte_for_byte(client):
    got = run(client)
    assert got.data == default_png()
    assert got.download["Content-Type"] == "image/png"
    result = got.result
    assert result["format"] == "png"
    assert result["options"] == {}
    assert (result["width"], result["height"]) == (512, 512)
    left, top, right, bottom = subject_box(default_alpha())
    assert result["foreground"] == {
        "top": top,
        "left": left,
        "width": right - left,
        "height": bottom - top,
    }


def test_options_at_their_defaults_give_the_same_bytes(client):
    defaults = {
        "format": "png",
        "channels": "rgba",
        "crop": "false",
        "size": "full",
        "alpha_matting": "false",
        "post_process_mask": "false",
    }
    got = run(client, defaults)
    assert got.data == default_png()
    assert got.result["options"] == {}


# --- Formats ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [
        ("png", "image/png", "png"),
        ("jpg", "image/jpeg", "jpg"),
        ("jpeg", "image/jpeg", "jpg"),
        ("webp", "image/webp", "webp"),
        ("zip", "application/zip", "zip"),
    ],
)
def test_each_format_is_stored_named_and_served_as_itself(client, fmt, content_type, extension):
    got = run(client, {"format": fmt})
    task_id = got.status["result"]["image_filename"].split("_")[0]
    filename = f"{task_id}_output.{extension}"
    assert got.result["image_filename"] == filename
    assert got.result["image_url"] == f"http://testserver/output/{filename}"
    assert got.result["format"] == extension
    assert got.download["Content-Type"] == content_type
    assert f'filename="{filename}"' in got.download["Content-Disposition"]
    assert RemovalJob.objects.get().output_file.name.endswith(f".{extension}")


def test_webp_decodes_with_the_same_alpha(client):
    image = run(client, {"format": "webp"}).image
    assert (image.format, image.mode, image.size) == ("WEBP", "RGBA", (512, 512))
    # Lossless: the alpha is the default PNG's, exactly.
    assert np.array_equal(np.asarray(image.getchannel("A")), default_alpha())


def test_jpg_has_no_alpha_and_is_flattened_on_white(client):
    image = run(client, {"format": "jpg"}).image
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (512, 512))
    pixels = np.asarray(image).astype(int)
    background = ndimage.binary_erosion(default_alpha() == 0, iterations=4)
    assert background.mean() > 0.1
    assert np.abs(pixels[background] - 255).max() <= 8  # white, within JPEG's noise


def test_zip_holds_the_colours_and_the_alpha(client):
    got = run(client, {"format": "zip"})
    with zipfile.ZipFile(io.BytesIO(got.data)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert alpha.mode == "L"
    assert np.array_equal(np.asarray(alpha), default_alpha())


# --- Background colour, mask only ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rgba"),
    [
        ("#1e90ff", (30, 144, 255, 255)),
        ("1E90FF", (30, 144, 255, 255)),
        ("#f00", (255, 0, 0, 255)),
        ("dodgerblue", (30, 144, 255, 255)),
        ("#1e90ff80", (30, 144, 255, 128)),
    ],
)
def test_bg_color_is_exact_where_the_default_alpha_is_zero(client, value, rgba):
    got = run(client, {"bg_color": value})
    image = got.image
    assert image.mode == "RGBA"
    pixels = np.asarray(image)
    background = default_alpha() == 0
    assert background.mean() > 0.1
    assert (pixels[background] == rgba).all()
    # An opaque subject stays itself.
    original = np.asarray(Image.open(io.BytesIO(default_png())))
    opaque = original[..., 3] == 255
    assert (pixels[opaque] == original[opaque]).all()
    assert got.result["options"] == {"bg_color": "#" + "".join(f"{c:02x}" for c in rgba)}


def test_a_jpg_on_a_colour_has_that_colour_in_its_corner(client):
    image = run(client, {"format": "jpg", "bg_color": "#1e90ff"}).image
    assert image.mode == "RGB"
    assert default_alpha()[:16, -16:].max() == 0  # the top right corner is background
    corner = np.asarray(image)[:16, -16:].astype(int)
    assert np.abs(corner - (30, 144, 255)).max() <= 4


def test_mask_only_is_the_alpha_of_the_default_output(client):
    got = run(client, {"channels": "alpha"})
    image = got.image
    assert (image.format, image.mode, image.size) == ("PNG", "L", (512, 512))
    assert np.array_equal(np.asarray(image), default_alpha())
    assert got.result["options"] == {"channels": "alpha"}


# --- Crop ---------------------------------------------------------------------------


@pytest.mark.parametrize("margin", ["0", "20", "20px", "10%"])
def test_crop_is_the_alphas_bounding_box_plus_the_margin(client, margin):
    alpha = default_alpha()
    left, top, right, bottom = subject_box(alpha)
    width, height = right - left, bottom - top
    if margin.endswith("%"):
        mx, my = round(10 * width / 100), round(10 * height / 100)
    else:
        mx = my = int(margin.removesuffix("px"))
    got = run(client, {"crop": "true", "crop_margin": margin})
    image = got.image
    box = (left - mx, top - my, right + mx, bottom + my)
    assert image.size == (box[2] - box[0], box[3] - box[1])
    assert (got.result["width"], got.result["height"]) == image.size
    assert got.result["foreground"] == {"top": my, "left": mx, "width": width, "height": height}
    # The same pixels, cut out (a margin past the photo's edge is transparent).
    expected = Image.fromarray(alpha).crop(box)
    assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(expected))


def test_crop_margin_is_capped_at_half_the_subject(client):
    left, top, right, bottom = subject_box(default_alpha())
    width, height = right - left, bottom - top
    image = run(client, {"crop": "true", "crop_margin": "90%"}).image
    assert image.size == (width + 2 * round(width / 2), height + 2 * round(height / 2))


# --- Size -----------------------------------------------------------------------------


def test_preview_fits_within_a_quarter_megapixel_and_keeps_the_aspect(client):
    got = run(client, {"size": "preview"}, image=WIDE)
    image = got.image
    assert image.width * image.height <= 250_000
    assert image.width * image.height > 240_000  # as large as fits
    assert abs(image.width / image.height - 1600 / 1066) < 0.01
    assert (got.result["width"], got.result["height"]) == image.size


def test_preview_keeps_an_image_already_small_enough(client):
    small = encode(photo("chelsea"), "JPEG")  # 451x300
    assert run(client, {"size": "preview"}, image=small).image.size == (451, 300)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        ({"max_width": "400"}, (400, 266)),
        ({"max_height": "100"}, (150, 100)),
        ({"max_width": "300", "max_height": "100"}, (150, 100)),
        ({"max_width": "120", "max_height": "100"}, (120, 80)),
        ({"max_width": "5000"}, (1600, 1066)),  # never upscaled
        ({"max_width": "5000", "max_height": "5000"}, (1600, 1066)),
    ],
)
def test_max_width_and_height_fit_and_never_upscale(client, data, size):
    got = run(client, data, image=WIDE)
    image = got.image
    assert image.width <= int(data.get("max_width", 10**6))
    assert image.height <= int(data.get("max_height", 10**6))
    # As large as fits (a pixel lost to rounding at most), aspect kept.
    assert abs(image.width - size[0]) <= 1 and abs(image.height - size[1]) <= 1
    assert (got.result["width"], got.result["height"]) == image.size


# --- Alpha matting --------------------------------------------------------------------


def test_alpha_matting_changes_the_mask_only_near_its_edges(client):
    plain = default_alpha()
    erode = 10
    got = run(
        client,
        {
            "alpha_matting": "true",
            "alpha_matting_foreground_threshold": "240",
            "alpha_matting_background_threshold": "10",
            "alpha_matting_erode_size": str(erode),
        },
    )
    matted = np.asarray(got.image.getchannel("A")).astype(int)
    # rembg's trimap: sure foreground (alpha > 240) and sure background
    # (alpha < 10), each eroded by erode_size (here by a little more); the
    # rest, the band along the subject's edges, is what matting solves.
    square = np.ones((erode + 3, erode + 3), dtype=bool)
    sure_fg = ndimage.binary_erosion(plain > 240, structure=square)
    sure_bg = ndimage.binary_erosion(plain < 10, structure=square, border_value=1)
    near_edges = ~(sure_fg | sure_bg)
    assert near_edges.mean() < 0.25  # a narrow band, so the checks below bite
    solved = np.abs(matted - plain) > 15  # beyond the thresholds' snapping
    assert solved.sum() > 1000, "matting changed nothing"
    assert not (solved & ~near_edges).any(), "changed far from any edge"
    # Away from the edges the sure regions are snapped to opaque / transparent.
    assert (matted[sure_fg] == 255).all() and (matted[sure_bg] == 0).all()
    assert got.result["options"] == {"alpha_matting": True}


def test_post_process_mask_is_applied(client):
    got = run(client, {"post_process_mask": "true"})
    assert got.result["options"] == {"post_process_mask": True}
    assert not np.array_equal(np.asarray(got.image.getchannel("A")), default_alpha())


# --- Refusals before the charge -----------------------------------------------------

BAD_VALUES = [
    ("format", "gif", "invalid_format"),
    ("bg_color", "not-a-colour", "invalid_bg_color"),
    ("bg_color", "#12345", "invalid_bg_color"),
    ("channels", "rgb", "invalid_channels"),
    ("crop", "maybe", "invalid_crop"),
    ("crop_margin", "ten", "invalid_crop_margin"),
    ("crop_margin", "-5px", "invalid_crop_margin"),
    ("crop_margin", "1 2 3", "invalid_crop_margin"),
    ("size", "huge", "invalid_size"),
    ("size", "hd", "invalid_size"),
    ("max_width", "0", "invalid_max_width"),
    ("max_width", "wide", "invalid_max_width"),
    ("max_width", "12.5", "invalid_max_width"),
    ("max_height", "70000", "invalid_max_height"),
    ("alpha_matting", "perhaps", "invalid_alpha_matting"),
    ("alpha_matting_foreground_threshold", "256", "invalid_alpha_matting_foreground_threshold"),
    ("alpha_matting_background_threshold", "-1", "invalid_alpha_matting_background_threshold"),
    ("alpha_matting_erode_size", "41", "invalid_alpha_matting_erode_size"),
    ("post_process_mask", "2", "invalid_post_process_mask"),
    ("webhook_url", "ftp://example.com/hook", "invalid_webhook_url"),
    ("model", "nope", "unknown_model"),
]


@pytest.mark.parametrize(("field", "value", "code"), BAD_VALUES)
def test_a_bad_value_is_a_400_naming_the_field_before_any_charge(
    client, account, field, value, code
):
    body = assert_refused(post(client, {field: value}), 400, code, account)
    assert field in body["error"], body


def test_a_bad_option_is_refused_before_the_image_url_is_fetched(client, account, redirector):
    url = redirector.url("/image.jpg")
    response = post(client, {"image_url": url, "format": "gif"}, image=None)
    assert_refused(response, 400, "invalid_format", account)
    assert redirector.requests == []


def test_an_option_sent_twice_is_refused(client, account):
    response = client.post(
        URL,
        {"file": SimpleUploadedFile("a.jpg", PHOTO), "format": ["png", "jpg"]},
        format="multipart",
    )
    assert_refused(response, 400, "invalid_field", account, names="format")


def test_options_do_not_change_the_price(client, account):
    run(client, {"format": "webp", "alpha_matting": "true", "crop": "true", "size": "preview"})
    account.refresh_from_db()
    assert account.credit_balance == ACCOUNT_CREDITS - settings.REMOVAL_PRICE_CREDITS


# --- Idempotency ---------------------------------------------------------------------


def test_the_idempotency_fingerprint_covers_the_options(client, account):
    first = post(client, {"format": "webp"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 202
    again = post(client, {"format": "webp"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.json()["task_id"] == first.json()["task_id"]
    other = post(client, {"format": "jpg"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    defaults = post(client, HTTP_IDEMPOTENCY_KEY="k-1")
    assert defaults.status_code == 409
    account.refresh_from_db()
    assert account.credit_balance == ACCOUNT_CREDITS - settings.REMOVAL_PRICE_CREDITS
    assert RemovalJob.objects.count() == 1


# --- The schema -------------------------------------------------------------------------


def test_the_schema_documents_every_seed_option_with_its_allowed_values(anon_client):
    schema = anon_client.get("/api/schema/?format=json").json()
    body = schema["paths"][URL]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    components = schema["components"]["schemas"]
    properties = components[ref]["properties"]
    sources = {"file", "image_url", "image_file_b64"}
    options = {option.wire_name for option in options_for(SEED)}
    urls = {option.url_field for option in options_for(SEED) if option.url_field}
    assert urls == {"bg_image_url"}
    assert set(properties) == options | urls | sources | {"model", "webhook_url"}

    def enum(name):
        prop = properties[name]
        if "$ref" in prop:
            prop = components[prop["$ref"].rsplit("/", 1)[-1]]
        elif "allOf" in prop:
            prop = components[prop["allOf"][0]["$ref"].rsplit("/", 1)[-1]]
        return prop["enum"]

    assert enum("format") == [*formats.FORMATS, "auto"]
    assert enum("channels") == list(parsers.CHANNELS)
    assert enum("size") == list(SEED_SIZES)
    assert enum("shadow_type") == list(parsers.SHADOW_TYPES)
    assert properties["bg_image_file"]["format"] == properties["file"]["format"]
    for name in ("crop", "alpha_matting", "post_process_mask", "add_shadow", "semitransparency"):
        assert properties[name]["type"] == "boolean", name
    for name, low, high in [
        ("max_width", 1, parsers.MAX_DIMENSION),
        ("max_height", 1, parsers.MAX_DIMENSION),
        ("alpha_matting_foreground_threshold", 0, 255),
        ("alpha_matting_background_threshold", 0, 255),
        ("alpha_matting_erode_size", 0, parsers.MAX_ERODE_SIZE),
        ("shadow_opacity", 0, 100),
    ]:
        assert (properties[name]["minimum"], properties[name]["maximum"]) == (low, high), name
    for name, prop in properties.items():
        assert prop.get("description"), f"{name} has no description"
    assert "#RRGGBB" in properties["bg_color"]["description"]
    assert "10%" in properties["crop_margin"]["description"]
    result = components["Result"]["properties"]
    assert {"format", "width", "height", "foreground", "options"} <= set(result)
