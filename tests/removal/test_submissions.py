"""Every check a submission passes before the charge, called directly, without HTTP.

Each door reads its wire format into ``Fields`` and calls ``build_request``
(the seed API and the web page through ``seed_request``); a refusal is an
``ApplicationError`` whose status and code the door answers with, in its
own dialect. The doors' tests (tests/doors/) check that dialect and that a
refusal charges nothing; what is refused, and why, is tested here (reading
the fields and the options: test_submissions_fields.py).
"""

import base64
import hashlib
import io
import random
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.datastructures import MultiValueDict
from PIL import Image, ImageFile

from imaging.options import REMOVEBG, SEED, OutputOptions
from imaging.reading import ImageInfo
from outbound import fetcher
from removal.models import RemovalJob
from removal.submissions import (
    Fields,
    InvalidField,
    build_request,
    request_fingerprint,
    seed_request,
)
from revid.errors import ApplicationError
from tests.images import (
    encode,
    grey_png,
    photo,
    photo_bytes,
    png_declaring,
    solid_png,
    with_damaged_idat,
)

PHOTO = photo_bytes("coffee")  # 600x400


@pytest.fixture(autouse=True)
def installed_models(settings, tmp_path):
    """u2net and u2netp count as installed (their weights files are there).

    No model runs here: a submission only checks that the weights exist.
    """
    (tmp_path / "u2net.onnx").write_bytes(b"weights")
    (tmp_path / "u2netp.onnx").write_bytes(b"weights")
    settings.U2NET_HOME = tmp_path


def upload(data: bytes = PHOTO, name: str = "photo.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def with_file(data: bytes = PHOTO, name: str = "photo.jpg", **data_fields) -> Fields:
    """A multipart form: ``data`` in the ``file`` part, the other fields as text."""
    return Fields(data_fields, {"file": upload(data, name)})


def build(fields: Fields, *, door: str = SEED, **kwargs):
    """``build_request`` as a door calls it (the seed API's field names)."""
    arguments = {
        "model_name": "u2netp",
        "idempotency_key": None,
        "webhook_url": None,
        "origin": RemovalJob.Origin.API,
        **kwargs,
    }
    return build_request(account=None, fields=fields, door=door, **arguments)


def refusal(fields: Fields, **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as refused:
        build(fields, **kwargs)
    return refused.value


# --- A request that passes ------------------------------------------------------


def test_it_builds_the_request_a_job_is_made_from():
    request = build(with_file(PHOTO, "My Photo.JPG"), idempotency_key=" order-42 ")
    assert request.source.data == PHOTO
    assert request.source.name == "My Photo.JPG"
    assert request.image == ImageInfo(format="jpeg", width=600, height=400)
    assert request.model_name == "u2netp"
    assert request.options == OutputOptions()
    assert request.idempotency_key == "order-42"
    assert request.webhook_url == ""
    assert request.origin == RemovalJob.Origin.API


def test_it_sniffs_the_format_instead_of_trusting_the_name():
    request = build(with_file(solid_png(), "actually-a-png.jpg"))
    assert request.image == ImageInfo(format="png", width=64, height=48)


@pytest.mark.parametrize("name", ["PHOTO.JPG", "Фото отпуска 日本.png", "CAPS.WEBP"])
def test_it_keeps_the_file_name_as_sent(name):
    assert build(with_file(name=name)).source.name == name


def test_the_model_defaults_to_the_setting_and_is_trimmed(settings):
    assert build(with_file(), model_name=None).model_name == settings.REMOVAL_DEFAULT_MODEL
    assert build(with_file(), model_name="   ").model_name == settings.REMOVAL_DEFAULT_MODEL
    assert build(with_file(), model_name="  u2netp\t").model_name == "u2netp"


def test_the_seed_api_and_the_web_page_read_the_model_and_webhook_from_their_fields(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    fields = with_file(model="  u2netp  ", webhook_url="http://127.0.0.1:9/hook")
    request = seed_request(account=None, fields=fields, idempotency_key=None, origin="web")
    assert (request.model_name, request.webhook_url, request.origin) == (
        "u2netp",
        "http://127.0.0.1:9/hook",
        "web",
    )


def test_without_a_webhook_url_the_accounts_default_is_kept(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    default = "http://127.0.0.1:9/account-hook"
    assert build(with_file(), default_webhook_url=default).webhook_url == default
    given = build(with_file(), webhook_url="http://127.0.0.1:9/hook", default_webhook_url=default)
    assert given.webhook_url == "http://127.0.0.1:9/hook"


def test_it_ignores_fields_and_file_parts_it_does_not_know():
    fields = Fields(
        {"colour": "blue"},
        {"file": upload(), "attachment": SimpleUploadedFile("notes.txt", b"not an image")},
    )
    assert build(fields).source.data == PHOTO


def test_remove_bgs_auto_format_is_resolved_before_the_job_is_stored():
    opaque = build(with_file(format="auto", bg_color="white"), door=REMOVEBG)
    assert opaque.options.format == "jpg"
    transparent = build(with_file(format="auto"), door=REMOVEBG)
    assert transparent.options.format == "png"


# --- Its checks run cheapest first ----------------------------------------------


def test_its_checks_run_cheapest_first():
    """Key, model, options, webhook URL, image source, then the image itself:
    each bad part is reported once everything checked before it is right."""
    kwargs = {
        "idempotency_key": "two words",
        "model_name": "u3net",
        "webhook_url": "ftp://example.com/hook",
    }
    fields = Fields({"format": "gif"})
    assert refusal(fields, **kwargs).code == "invalid_idempotency_key"
    kwargs["idempotency_key"] = "order-42"
    assert refusal(fields, **kwargs).code == "unknown_model"
    kwargs["model_name"] = "u2netp"
    assert refusal(fields, **kwargs).code == "invalid_format"
    fields = Fields({})
    assert refusal(fields, **kwargs).code == "invalid_webhook_url"
    del kwargs["webhook_url"]
    assert refusal(fields, **kwargs).code == "file_required"
    assert refusal(with_file(b"not an image"), **kwargs).code == "unsupported_format"


@pytest.mark.parametrize(
    ("fields", "kwargs", "code"),
    [
        ({"format": "gif"}, {}, "invalid_format"),
        ({}, {"webhook_url": "ftp://example.com/hook"}, "invalid_webhook_url"),
        ({}, {"model_name": "u3net"}, "unknown_model"),
    ],
    ids=["bad option", "bad webhook", "unknown model"],
)
def test_a_bad_request_is_refused_before_its_image_url_is_fetched(fields, kwargs, code):
    url = {"image_url": "http://127.0.0.1:9/image.jpg"}
    with mock.patch.object(fetcher, "fetch", side_effect=AssertionError("fetched")):
        assert refusal(Fields({**url, **fields}), **kwargs).code == code


# --- The model --------------------------------------------------------------------


def test_it_refuses_an_unknown_model_and_names_the_supported_ones():
    refused = refusal(with_file(), model_name="u3net")
    assert (refused.status_code, refused.code) == (400, "unknown_model")
    assert "'u3net'" in refused.message and "u2net, " in refused.message


def test_it_quotes_only_a_little_of_a_10_kb_model_name():
    refused = refusal(with_file(), model_name="m" * 10_000)
    assert refused.code == "unknown_model"
    assert len(refused.message) < 300


def test_it_answers_503_for_a_known_model_without_weights():
    refused = refusal(with_file(), model_name="silueta")
    assert (refused.status_code, refused.code) == (503, "model_unavailable")
    assert "silueta" in refused.message


def test_it_refuses_a_model_sent_as_a_file():
    fields = Fields({}, {"file": upload(), "model": SimpleUploadedFile("model.txt", b"u2netp")})
    with pytest.raises(InvalidField) as refused:
        seed_request(account=None, fields=fields, idempotency_key=None, origin="api")
    assert (refused.value.status_code, refused.value.code) == (400, "invalid_model_field")


# --- The idempotency key and the webhook URL ------------------------------------------


@pytest.mark.parametrize("key", ["x" * 256, "two words", "caf\u00e9", "tab\there"])
def test_it_refuses_a_malformed_idempotency_key(key):
    refused = refusal(with_file(), idempotency_key=key)
    assert (refused.status_code, refused.code) == (400, "invalid_idempotency_key")
    assert "255 visible ASCII" in refused.message


def test_an_idempotency_key_of_255_visible_characters_is_taken():
    key = "".join(chr(33 + i % 94) for i in range(255))
    assert build(with_file(), idempotency_key=key).idempotency_key == key


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/hook", "not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "not allowed"),
        ("http://127.0.0.1/hook", "not allowed"),
        ("http://example.com/" + "a" * 2000, "too long"),
        ("   ", "empty"),
    ],
)
def test_it_refuses_a_webhook_url_it_would_not_post_to(url, says):
    refused = refusal(with_file(), webhook_url=url)
    assert (refused.status_code, refused.code) == (400, "invalid_webhook_url")
    assert says in refused.message


# --- The image source ---------------------------------------------------------------


def test_it_refuses_a_request_without_an_image():
    refused = refusal(Fields({"model": "u2netp"}))
    assert (refused.status_code, refused.code) == (400, "file_required")
    assert "'file'" in refused.message and "image_url" in refused.message


def test_a_file_sent_as_a_plain_field_is_no_file():
    assert refusal(Fields({"file": "\x89PNG..."})).code == "file_required"


def test_it_refuses_several_files():
    files = MultiValueDict({"file": [upload(), upload(solid_png(10, 10), "b.png")]})
    refused = refusal(Fields({}, files))
    assert (refused.status_code, refused.code) == (400, "multiple_files")


def test_it_refuses_two_kinds_of_source():
    both = with_file(image_file_b64=base64.b64encode(PHOTO).decode())
    refused = refusal(both)
    assert (refused.status_code, refused.code) == (400, "multiple_sources")


def test_it_refuses_a_file_over_the_byte_limit_from_its_declared_size(settings):
    settings.MAX_UPLOAD_BYTES = 1000
    refused = refusal(with_file(PHOTO))
    assert (refused.status_code, refused.code) == (413, "file_too_large")
    assert refused.message == (
        f"File too large: {len(PHOTO) / 1048576:.1f} MB; the limit is 0.0 MB."
    )


def test_it_refuses_a_file_that_grows_past_the_limit_while_read(settings):
    settings.MAX_UPLOAD_BYTES = 1000
    part = upload(PHOTO)
    part.size = None  # a size the client did not declare
    refused = refusal(Fields({}, {"file": part}))
    assert refused.code == "file_too_large"
    assert refused.message == "File too large: the limit is 0.0 MB."


def test_a_file_at_exactly_the_limit_is_taken(settings):
    data = solid_png(20, 20)
    settings.MAX_UPLOAD_BYTES = len(data)
    assert build(with_file(data)).source.data == data


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(PHOTO).decode(),
        "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode(),
        base64.encodebytes(PHOTO).decode(),  # wrapped at 76 characters
        base64.urlsafe_b64encode(PHOTO).decode().rstrip("="),
    ],
    ids=["plain", "data-url", "wrapped", "url-safe-unpadded"],
)
def test_it_takes_the_image_in_base64(encoded):
    request = build(Fields({"image_file_b64": encoded}))
    assert request.source.data == PHOTO
    assert request.source.name == ""


@pytest.mark.parametrize(
    ("encoded", "code"),
    [
        ("not base64 at all!", "invalid_image_file_b64"),
        ("data:image/png,abc", "invalid_image_file_b64"),
        ("data:image/png;base64,@@@@", "invalid_image_file_b64"),
        ("QUJD*", "invalid_image_file_b64"),
        ("data:image/png;base64,", "invalid_image"),
    ],
)
def test_it_refuses_malformed_or_empty_base64(encoded, code):
    refused = refusal(Fields({"image_file_b64": encoded}))
    assert (refused.status_code, refused.code) == (400, code)
    assert "image_file_b64" in refused.message


def test_it_refuses_base64_longer_than_the_byte_limit_allows_before_decoding_it(settings):
    settings.MAX_UPLOAD_BYTES = 1000
    encoded = base64.b64encode(PHOTO).decode()
    with mock.patch.object(base64, "b64decode", side_effect=AssertionError("decoded")):
        refused = refusal(Fields({"image_file_b64": encoded}))
    assert (refused.status_code, refused.code) == (413, "file_too_large")


def test_it_downloads_image_url_and_names_the_source_after_its_last_segment(loopback_files):
    url = loopback_files.serve("/people/my%20astronaut.jpg", PHOTO)
    request = build(Fields({"image_url": url}))
    assert request.source.data == PHOTO
    assert request.source.name == "my astronaut.jpg"
    assert request.image.format == "jpeg"


def test_it_refuses_image_urls_it_may_not_fetch(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    for url in ("http://127.0.0.1/a.jpg", "http://169.254.169.254/latest/meta-data/"):
        refused = refusal(Fields({"image_url": url}))
        assert (refused.status_code, refused.code) == (400, "invalid_image_url")
    too_long = "http://example.com/" + "a" * 2048
    assert refusal(Fields({"image_url": too_long})).message == (
        "image_url is longer than 2048 characters."
    )


def test_it_reports_an_image_url_whose_download_failed(loopback_files):
    refused = refusal(Fields({"image_url": loopback_files.url + "/missing.jpg"}))
    assert (refused.status_code, refused.code) == (400, "failed_image_download")
    assert "404" in refused.message
    empty = loopback_files.serve("/empty.jpg", b"")
    assert refusal(Fields({"image_url": empty})).message == "The image at image_url is empty."


def test_it_refuses_an_image_url_whose_file_is_over_the_byte_limit(loopback_files, settings):
    settings.MAX_UPLOAD_BYTES = 1000
    refused = refusal(Fields({"image_url": loopback_files.serve("/big.jpg", PHOTO)}))
    assert (refused.status_code, refused.code) == (413, "file_too_large")
    assert "image_url" in refused.message


# --- The image itself -------------------------------------------------------------------


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
GIF_SENTENCE = "Unsupported image format: gif. Supported: png, jpg, jpeg, webp, bmp"


@pytest.mark.parametrize(
    ("label", "make", "status", "code", "says"),
    [
        ("zero bytes", lambda: b"", 400, "invalid_image", "empty"),
        (
            "truncated JPEG",
            lambda: photo_bytes("astronaut")[: len(photo_bytes("astronaut")) // 2],
            400,
            "invalid_image",
            "truncated",
        ),
        (
            "truncated PNG",
            lambda: photo_bytes("coffee", "PNG")[: len(photo_bytes("coffee", "PNG")) // 2],
            400,
            "invalid_image",
            "PNG",
        ),
        (
            "random bytes",
            lambda: random.Random(4).randbytes(5000),
            415,
            "unsupported_format",
            "Unsupported image format: unknown",
        ),
        (
            "a text file named .png",
            lambda: b"hello, this is not a picture\n" * 20,
            415,
            "unsupported_format",
            "Unsupported image format: unknown",
        ),
        ("SVG", lambda: SVG, 415, "unsupported_format", "Unsupported image format: svg"),
        (
            "TIFF",
            lambda: encode(photo("chelsea"), "TIFF"),
            415,
            "unsupported_format",
            "Unsupported image format: tiff",
        ),
        (
            "a still GIF",
            lambda: encode(photo("chelsea"), "GIF"),
            415,
            "unsupported_format",
            GIF_SENTENCE,
        ),
        ("animated GIF", animated_gif, 415, "unsupported_format", GIF_SENTENCE),
        (
            "decompression bomb",
            lambda: png_declaring(60000, 60000),
            413,
            "image_too_large",
            "absurd number of pixels",
        ),
    ],
)
def test_it_refuses_an_image_it_cannot_take_with_the_status_and_code_doors_answer(
    label, make, status, code, says
):
    refused = refusal(with_file(make(), "upload.png"))
    assert (refused.status_code, refused.code) == (status, code), label
    assert says in refused.message, (label, refused.message)


def test_a_png_whose_pixel_data_is_corrupt_is_refused():
    """Reading a PNG's EXIF decodes it; that decode's error must not be swallowed."""
    refused = refusal(with_file(with_damaged_idat(photo_bytes("coffee", "PNG"))))
    assert (refused.status_code, refused.code) == (400, "invalid_image")
    assert refused.message == "The PNG file is damaged or truncated and could not be decoded."


def test_it_refuses_a_declared_size_over_the_pixel_limit_below_pillows_guard():
    # 9000 x 6000 = 54 M pixels: over the 50 M default, under Pillow's own guard.
    refused = refusal(with_file(png_declaring(9000, 6000)))
    assert (refused.status_code, refused.code) == (413, "image_too_large")
    assert "9000x6000" in refused.message and "50,000,000" in refused.message


def test_it_refuses_a_real_image_over_the_pixel_limit(settings):
    settings.MAX_IMAGE_PIXELS = 10_000
    refused = refusal(with_file(solid_png(200, 100)))
    assert (refused.status_code, refused.code) == (413, "image_too_large")
    assert "200x100" in refused.message


@pytest.mark.parametrize("size", [(1, 50_000_000), (50_000_000, 1)], ids=["1xN", "Nx1"])
def test_an_image_too_long_to_process_is_refused_from_its_header(size):
    data = grey_png(*size)  # valid, about 100 kB, within the 50 M pixel limit
    assert len(data) < 200_000
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")):
        refused = refusal(with_file(data))
    assert (refused.status_code, refused.code) == (413, "image_too_large")
    width, height = size
    assert refused.message == (
        f"Image is {width}x{height}; the longest side allowed is 65,535 pixels."
    )


def test_the_longest_side_follows_the_setting(settings):
    settings.MAX_IMAGE_SIDE = 299
    assert refusal(with_file(grey_png(300, 20))).code == "image_too_large"
    settings.MAX_IMAGE_SIDE = 300
    assert build(with_file(grey_png(300, 20))).image == ImageInfo("png", 300, 20)


# --- The fingerprint an idempotency key is checked against --------------------------------


def test_the_fingerprint_covers_the_file_the_model_and_the_options():
    request = build(with_file(), idempotency_key="k-1")
    same = build(with_file(), idempotency_key="k-2")
    assert request.fingerprint() == same.fingerprint()
    other_options = build(with_file(format="webp"))
    other_model = build(with_file(), model_name="u2net")
    other_file = build(with_file(solid_png()))
    fingerprints = {r.fingerprint() for r in (request, other_options, other_model, other_file)}
    assert len(fingerprints) == 4


def test_default_options_fingerprint_as_before_options_existed():
    """Keys stored before there were options must still match their retries."""
    before = hashlib.sha256(b"u2netp\0" + PHOTO).hexdigest()
    assert request_fingerprint(model_name="u2netp", options=OutputOptions(), data=PHOTO) == before
