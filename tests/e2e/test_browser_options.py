"""The upload page's Options panel in a real headless Chromium, against the
live server, a real qcluster worker and the real u2netp model: the file
the customer downloads is the one the options asked for."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from imaging import pipeline, subject
from removal import registry
from removal.models import RemovalJob
from tests.e2e.conftest import log_in
from tests.e2e.test_browser import screenshot
from tests.images import photo_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.model]

BLUE = (30, 144, 255)
MARGIN = 10


def expected_crop_size(data: bytes) -> tuple[int, int]:
    """The default cut-out's subject box (alpha >= 8) plus the margin on each side."""
    png = pipeline.remove_background(
        data, registry.get_session("u2netp"), max_pixels=settings.MAX_IMAGE_PIXELS
    ).data
    alpha = np.asarray(Image.open(io.BytesIO(png)).getchannel("A"))
    ys, xs = np.nonzero(alpha >= subject.FOREGROUND_MIN_ALPHA)
    width, height = xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
    return int(width) + 2 * MARGIN, int(height) + 2 * MARGIN


def test_a_customer_gets_a_cropped_jpg_on_a_colour_through_the_options_panel(
    live_server, start_worker, customer, page, tmp_path
):
    start_worker()
    data = photo_bytes("astronaut")
    photo_path = tmp_path / "astronaut.jpg"
    photo_path.write_bytes(data)

    log_in(page, live_server, "alice")
    page.set_input_files("#file-input", str(photo_path))
    page.select_option("#model-select", "u2netp")

    # The panel opens from the keyboard: it comes right after the model.
    page.focus("#model-select")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Options"
    page.keyboard.press("Enter")
    assert page.evaluate("document.getElementById('options-panel').open")

    page.get_by_label("Format").select_option("jpg")
    assert page.locator("#opt-format-hint").is_visible()  # JPG: white unless a colour
    assert page.locator("#opt-bg-color").is_disabled()
    page.get_by_label("Background colour", exact=True).check()
    page.locator("#opt-bg-color").fill("#1e90ff")
    assert page.locator("#opt-format-hint").is_hidden()
    page.get_by_label("Crop to the subject").check()
    page.get_by_label("Margin").fill(f"{MARGIN}px")
    # Matting's thresholds are only sent with matting.
    assert page.get_by_label("Erode size (0–40 px)").is_disabled()
    screenshot(page, "upload-options.png")

    page.get_by_role("button", name="Remove background").click()
    page.wait_for_function(
        "document.getElementById('job-progressbar').getAttribute('aria-valuenow') === '100'",
        timeout=120_000,
    )
    page.locator("#job-result").wait_for(state="visible")
    job = RemovalJob.objects.get()
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    assert job.options == {
        "format": "jpg",
        "bg_color": "#1e90ffff",
        "crop": True,
        "crop_margin": [f"{MARGIN}px"] * 4,
    }
    width, height = expected_crop_size(data)
    assert (job.output_width, job.output_height) == (width, height)

    # The "after" picture is the output file itself.
    after = page.locator("#job-after")
    assert after.get_attribute("src") == f"/output/{job.id}_output.jpg"
    page.wait_for_function(f"document.getElementById('job-after').naturalWidth === {width}")
    assert page.locator("#job-dimensions").inner_text() == f"{width} × {height}"
    summary = page.locator("#job-options").inner_text()
    assert summary == f"JPG · background #1e90ff · crop, margin {MARGIN}px"

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download JPG").click()
    download = download_info.value
    assert download.suggested_filename == f"{job.id}_output.jpg"
    image = Image.open(io.BytesIO(Path(download.path()).read_bytes()))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (width, height))
    # The margin's corner is background: the chosen colour, within JPEG's noise.
    corner = np.asarray(image)[:4, :4].astype(int)
    assert np.abs(corner - BLUE).max() <= 6, corner[0, 0]

    # The choice is remembered on the next visit.
    page.goto(f"{live_server.url}/")
    assert page.evaluate("document.getElementById('options-panel').open")
    assert page.get_by_label("Format").input_value() == "jpg"
    assert page.get_by_label("Background colour", exact=True).is_checked()
    assert page.locator("#opt-bg-color").input_value() == "#1e90ff"
    assert page.get_by_label("Crop to the subject").is_checked()
    assert page.get_by_label("Margin").input_value() == f"{MARGIN}px"
    # A phone-width screen with the panel open: nothing wider than the screen.
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.set_viewport_size({"width": 1200, "height": 860})
    page.get_by_role("button", name="Reset options").click()
    assert page.get_by_label("Format").input_value() == "png"
    assert not page.get_by_label("Crop to the subject").is_checked()
    assert page.locator("#opt-bg-color").is_disabled()

    # The job page and the dashboard say which options were used.
    page.goto(f"{live_server.url}/jobs/{job.id}/")
    assert page.locator("#job-options").inner_text() == summary
    page.goto(f"{live_server.url}/dashboard/")
    assert page.get_by_test_id("job-options").inner_text() == summary
