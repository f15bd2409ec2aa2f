"""What a new user tripped on (issue 21), in a real headless Chromium at a
laptop's width (1280 px) and a phone's (390 px): whole pictures in the
before/after frames, the webhook field, the usage chart's day labels, the
dashboard of an unverified address, and error messages in the page's words."""

import io
import re
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from django.core.cache import cache
from PIL import Image

from accounts.services import add_member
from imaging.options import OPTIONS_BY_NAME, WEB, options_for
from removal.models import RemovalJob
from tests.e2e.conftest import PASSWORD, log_in
from tests.images import encode, photo
from tests.ledger_history import run_job

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WIDTHS = (1280, 390)


@pytest.fixture
def open_page(browser):
    """A fresh page at a given width (a phone's screen is taller than wide)."""
    contexts = []

    def open_at(width: int):
        height = 900 if width > 800 else 844
        context = browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield open_at
    for context in contexts:
        context.close()


def fits_the_screen(page) -> None:
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width


# --- 1. the before/after frames show the whole picture ---------------------------------

SHAPES = {
    "portrait": photo("astronaut").crop((128, 0, 384, 512)),  # 256 x 512
    "landscape": photo("coffee"),  # 600 x 400
    "square": photo("astronaut"),  # 512 x 512
}


def assert_whole_picture(page, image_id: str, size: tuple[int, int]) -> None:
    """The picture's box lies inside its frame, with the file's proportions."""
    image = page.locator(f"#{image_id}")
    page.wait_for_function(
        f"document.getElementById('{image_id}').complete && "
        f"document.getElementById('{image_id}').naturalWidth > 0"
    )
    box = image.bounding_box()
    frame = image.locator("xpath=..").bounding_box()
    where = f"{image_id} at {page.viewport_size['width']} px: {box} in {frame}"
    assert box["x"] >= frame["x"] - 0.5 and box["y"] >= frame["y"] - 0.5, where
    assert box["x"] + box["width"] <= frame["x"] + frame["width"] + 0.5, where
    assert box["y"] + box["height"] <= frame["y"] + frame["height"] + 0.5, where
    assert box["width"] / box["height"] == pytest.approx(size[0] / size[1], rel=0.02), where
    # The frame itself is on the screen, side to side.
    assert frame["x"] >= 0 and frame["x"] + frame["width"] <= page.viewport_size["width"], where


@pytest.mark.model
def test_the_frames_show_the_whole_picture_of_any_shape_as_the_download_has_it(
    live_server, start_worker, customer, open_page, tmp_path
):
    start_worker()
    page = open_page(1280)
    log_in(page, live_server, "alice")
    for shape, picture in SHAPES.items():
        path = tmp_path / f"{shape}.jpg"
        path.write_bytes(encode(picture))
        page.goto(f"{live_server.url}/")
        page.set_input_files("#file-input", str(path))
        page.select_option("#model-select", "u2netp")
        page.get_by_role("button", name="Remove background").click()
        page.locator("#job-result").wait_for(state="visible", timeout=120_000)
        with page.expect_download() as download_info:
            page.locator("#job-download").click()
        download = Image.open(io.BytesIO(Path(download_info.value.path()).read_bytes()))
        job = RemovalJob.objects.get(original_filename=f"{shape}.jpg")
        assert (job.width, job.height) == picture.size
        assert_whole_picture(page, "job-before", picture.size)
        assert_whole_picture(page, "job-after", download.size)
        # Nothing drawn over it (the note is for a zip, which cannot be shown).
        assert page.locator("#job-after-note").is_hidden()
        fits_the_screen(page)

        # The job's own page on a phone: the same whole pictures.
        phone = open_page(390)
        log_in(phone, live_server, "alice", path=f"/jobs/{job.id}/")
        phone.locator("#job-result").wait_for(state="visible")
        assert_whole_picture(phone, "job-before", picture.size)
        assert_whole_picture(phone, "job-after", download.size)
        assert phone.locator("#job-after-note").is_hidden()
        fits_the_screen(phone)


# --- 2. the webhook URL field is an input like the others ---------------------------

INPUT_LOOK = """element => {
    const s = getComputedStyle(element);
    return [s.fontSize, s.paddingLeft, s.paddingTop, s.borderTopWidth, s.borderTopColor,
            s.borderTopLeftRadius, s.minHeight, s.backgroundColor];
}"""


@pytest.mark.parametrize("width", WIDTHS)
def test_the_webhook_url_field_is_styled_like_the_other_inputs(
    live_server, customer, open_page, width
):
    page = open_page(width)
    log_in(page, live_server, "alice", path="/dashboard/")
    webhook = page.get_by_label("Webhook URL")
    assert webhook.evaluate(INPUT_LOOK) == page.get_by_label("New key name").evaluate(INPUT_LOOK)
    field = webhook.bounding_box()
    form = webhook.locator("xpath=ancestor::form").bounding_box()
    assert field["height"] >= 40
    if width < 720:
        # A phone: the whole width of the form, the button below it.
        assert field["width"] == pytest.approx(form["width"], abs=1)
    else:
        assert field["width"] >= 0.6 * form["width"]
    fits_the_screen(page)


# --- 3. the usage chart's day labels ---------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_the_charts_day_labels_are_legible_and_never_overlap(
    live_server, customer, open_page, width
):
    run_job(customer)
    run_job(customer, fail=True)
    page = open_page(width)
    log_in(page, live_server, "alice", path="/usage/")
    section = page.locator("section[aria-labelledby=chart-heading]")
    card = section.bounding_box()
    # The day labels, whatever draws them ("Nov 28"), in both charts.
    labels = section.get_by_text(re.compile(r"^[A-Z][a-z]{2} \d{1,2}$")).all()
    assert len(labels) >= 8
    boxes = []
    for label in labels:
        box = label.bounding_box()
        size = float(label.evaluate("e => getComputedStyle(e).fontSize").removesuffix("px"))
        # Legible as drawn: the font and the box it takes on the screen.
        assert size >= 10 and box["height"] >= 10, (label.text_content(), size, box)
        assert card["x"] <= box["x"] and box["x"] + box["width"] <= card["x"] + card["width"]
        boxes.append(box)
    for n, first in enumerate(boxes):
        for second in boxes[n + 1 :]:
            apart = (
                first["x"] + first["width"] <= second["x"]
                or second["x"] + second["width"] <= first["x"]
                or first["y"] + first["height"] <= second["y"]
                or second["y"] + second["height"] <= first["y"]
            )
            assert apart, (first, second)
    fits_the_screen(page)


# --- 4. an unverified address: no key form, but what to do ---------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_an_unverified_user_is_told_how_to_verify_instead_of_a_key_form(
    live_server, account, open_page, width, mailoutbox
):
    cache.clear()  # allauth's limit on verification mails
    address = f"dora{width}@example.com"
    member = add_member(account=account, username="dora", password=PASSWORD)
    EmailAddress.objects.create(user=member.user, email=address, verified=False, primary=True)
    page = open_page(width)
    log_in(page, live_server, "dora", path="/dashboard/")

    keys = page.locator("#api-keys")
    assert keys.get_by_role("button", name="Create key").count() == 0
    assert keys.get_by_label("New key name").count() == 0
    notice = page.locator("#verify-email")
    assert notice.is_visible()
    assert "Verify your email address to create API keys" in notice.inner_text()
    assert address in notice.inner_text()
    fits_the_screen(page)

    # A form left open in another tab: the dashboard again, saying why.
    token = page.locator("#verify-email input[name=csrfmiddlewaretoken]").input_value()
    with page.expect_navigation() as navigation:
        page.evaluate(
            """token => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = '/dashboard/keys/';
            for (const [name, value] of [['csrfmiddlewaretoken', token], ['name', 'laptop']]) {
                const input = document.createElement('input');
                input.type = 'hidden'; input.name = name; input.value = value;
                form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        }""",
            token,
        )
    assert navigation.value.status == 200
    assert page.url == f"{live_server.url}/dashboard/#api-keys"
    assert "Verify your email address before creating an API key" in page.inner_text("main")

    # The link again, from the dashboard.
    page.get_by_role("button", name="Resend the verification link").click()
    page.wait_for_load_state()
    assert [mail.to for mail in mailoutbox] == [[address]]
    assert "verify" in mailoutbox[0].body.lower() or "confirm" in mailoutbox[0].body.lower()


# --- 5. errors in the page's words -----------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_errors_name_the_fields_by_the_labels_on_the_page(
    live_server, customer, open_page, width, tmp_path
):
    photo_path = tmp_path / "photo.jpg"
    photo_path.write_bytes(encode(SHAPES["square"]))
    background_path = tmp_path / "wall.png"
    background_path.write_bytes(encode(photo("coffee"), "PNG"))
    page = open_page(width)
    log_in(page, live_server, "alice")
    page.set_input_files("#file-input", str(photo_path))
    page.select_option("#model-select", "u2netp")
    page.locator("#options-panel > summary").click()
    colour, background = OPTIONS_BY_NAME["bg_color"].web, OPTIONS_BY_NAME["bg_image"].web
    page.get_by_label(colour.label, exact=True).check()
    page.set_input_files(f"#{background.id}", str(background_path))
    page.get_by_role("button", name="Remove background").click()

    error = page.locator("#upload-error")
    error.wait_for(state="visible")
    text = error.inner_text()
    assert colour.label in text and background.label in text, text
    for option in options_for(WEB):
        for name in filter(None, (option.wire_name, option.url_field)):
            if "_" in name:  # the API's field names: bg_color, bg_image_file, ...
                assert name not in text, text
    assert text.endswith("Nothing was charged.")
    assert not RemovalJob.objects.exists()
    fits_the_screen(page)
