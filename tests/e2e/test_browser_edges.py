"""The result's edge close-up in a real headless Chromium, against the live
server, a real qcluster worker and the real u2netp model: a small piece of
the edge, the photo's pixels beside the result's, magnified."""

import io

import numpy as np
import pytest
from PIL import Image

from removal.models import RemovalJob
from tests.e2e.conftest import log_in
from tests.e2e.test_browser import screenshot
from tests.images import photo_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.model]

CANVAS = 240  # the close-up's canvases, in pixels (templates/removal/_job_panel.html)

READ_CANVASES = """() => ['job-zoom-before', 'job-zoom-after'].map(id => {
    const canvas = document.getElementById(id);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const alpha = Array.from(data.filter((_, i) => i % 4 === 3));
    return {piece: canvas.getAttribute('data-piece'), alpha: alpha};
})"""


def remove_background(page, live_server, photo_path, *, fmt: str | None = None) -> RemovalJob:
    page.goto(f"{live_server.url}/")
    page.set_input_files("#file-input", str(photo_path))
    page.select_option("#model-select", "u2netp")
    if fmt:
        page.locator("#options-panel > summary").click()
        page.get_by_label("Format").select_option(fmt)
    page.get_by_role("button", name="Remove background").click()
    page.wait_for_function(
        "document.getElementById('job-progressbar').getAttribute('aria-valuenow') === '100'",
        timeout=120_000,
    )
    page.locator("#job-result").wait_for(state="visible")
    job = RemovalJob.objects.order_by("-created_at").first()
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    return job


def test_the_result_shows_an_edge_close_up_before_and_after(
    live_server, start_worker, customer, page, tmp_path
):
    start_worker()
    photo_path = tmp_path / "astronaut.jpg"
    photo_path.write_bytes(photo_bytes("astronaut"))
    log_in(page, live_server, "alice")

    job = remove_background(page, live_server, photo_path)
    page.locator("#job-zoom").wait_for(state="visible")
    before, after = page.evaluate(READ_CANVASES)
    left, top, side = (int(v) for v in after["piece"].split(","))
    assert 16 <= side <= 96
    note = page.locator("#job-zoom-note").inner_text()
    assert note == f"A {side} × {side} pixel piece of the edge, {CANVAS / side:.1f}× magnified."

    # Before: the photo, opaque. After: the result's pixels there, magnified.
    assert set(before["alpha"]) == {255}
    with job.output_file.open("rb") as stored:
        alpha = np.asarray(Image.open(io.BytesIO(stored.read())).getchannel("A"))
    piece = alpha[top : top + side, left : left + side]
    assert ((piece > 0) & (piece < 255)).mean() > 0.05, "the spot is on the subject's edge"
    shown = np.asarray(after["alpha"], dtype=np.uint8).reshape(CANVAS, CANVAS)
    # Nearest neighbour, each result pixel a block of the canvas: each canvas
    # pixel shows the result's pixel under its centre (the browser may round
    # a block's edge to either side when the scale is not a whole number).
    source = ((np.arange(CANVAS) + 0.5) * side / CANVAS).astype(int)
    nearest = np.full(shown.shape, 255)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            rows = np.clip(source + dy, 0, side - 1)
            cols = np.clip(source + dx, 0, side - 1)
            candidate = np.abs(shown.astype(int) - piece[np.ix_(rows, cols)].astype(int))
            nearest = np.minimum(nearest, candidate)
    assert (nearest <= 1).all()
    page.wait_for_timeout(300)
    screenshot(page, "edge-zoom.png")

    # A JPG has no transparency: nothing to show.
    remove_background(page, live_server, photo_path, fmt="jpg")
    page.wait_for_function("document.getElementById('job-after').naturalWidth === 512")
    page.wait_for_timeout(300)
    assert page.locator("#job-zoom").is_hidden()
