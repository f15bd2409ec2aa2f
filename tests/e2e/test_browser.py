"""The web page, the admin and the API docs in a real headless Chromium
(Debian's package, driven by Playwright), against the live server, a real
qcluster worker and the real u2net model. Also takes the README's
screenshots (into var/screenshots; `make screenshots` refreshes docs/)."""

import base64
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from django.contrib.auth import get_user_model
from PIL import Image

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal import registry
from removal.models import RemovalJob
from tests.conftest import ROOT
from tests.e2e.conftest import PASSWORD, log_in
from tests.images import photo_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Screenshots go to an ignored folder, so a test run leaves the checkout
# clean; `make screenshots` points this at docs/screenshots to refresh the
# README's pictures on purpose.
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or ROOT / "var" / "screenshots")
# A real GIF (one red pixel): a format the service refuses.
GIF_BYTES = base64.b64decode("R0lGODlhAQABAPAAAP8AAP///yH5BAAAAAAALAAAAAABAAEAAAICRAEAOw==")


def screenshot(page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_a_customer_removes_a_background_and_downloads_a_transparent_png(
    live_server, start_worker, customer, page, tmp_path
):
    start_worker()
    photo_path = tmp_path / "astronaut.jpg"
    photo_path.write_bytes(photo_bytes("astronaut"))

    log_in(page, live_server, "alice")
    assert page.url == f"{live_server.url}/"
    assert page.get_by_test_id("balance").inner_text() == "1000"
    # Models without weights are listed but cannot be chosen.
    for name in registry.MODELS:
        option = page.locator(f"#model-select option[value='{name}']")
        assert option.is_disabled() != registry.is_available(name), name

    # The file input is reachable with the keyboard.
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file-input":
            break
    assert page.evaluate("document.activeElement.id") == "file-input"

    page.set_input_files("#file-input", str(photo_path))
    page.select_option("#model-select", "u2net")
    assert "astronaut.jpg" in page.locator("#file-chosen").inner_text()
    screenshot(page, "upload.png")

    # Record every value the progress bar shows.
    page.evaluate(
        """() => {
        window.progressSeen = [];
        const bar = document.getElementById('job-progressbar');
        new MutationObserver(() => window.progressSeen.push(
            Number(bar.getAttribute('aria-valuenow')))).observe(bar, {attributes: true});
    }"""
    )
    page.get_by_role("button", name="Remove background").click()
    page.wait_for_function(
        "document.getElementById('job-progressbar').getAttribute('aria-valuenow') === '100'",
        timeout=120_000,
    )
    seen = page.evaluate("window.progressSeen")
    assert seen[-1] == 100
    assert seen == sorted(seen), seen
    assert page.locator("#job-percent").inner_text() == "100 %"
    assert page.locator("#job-message").inner_text() == "Background removal completed successfully"

    result = page.locator("#job-result")
    result.wait_for(state="visible")
    page.wait_for_function(
        "['job-before', 'job-after'].every(id => document.getElementById(id).naturalWidth === 512)"
    )
    job = RemovalJob.objects.get()
    assert job.status == RemovalJob.Status.COMPLETED
    assert page.locator("#job-model").inner_text() == "u2net"
    assert page.locator("#job-dimensions").inner_text() == "512 × 512"
    assert page.locator("#job-output-size").inner_text() == f"{job.output_size / 1024:.1f} KB"
    assert page.locator("#job-elapsed").inner_text() == f"{job.elapsed_seconds:.2f} s"
    assert page.get_by_test_id("balance").inner_text() == "975"
    page.wait_for_timeout(400)  # let the bar's width transition finish for the picture
    screenshot(page, "result.png")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download PNG").click()
    download = download_info.value
    assert download.suggested_filename == f"{job.id}_output.png"
    image = Image.open(io.BytesIO(Path(download.path()).read_bytes()))
    assert image.format == "PNG"
    assert image.mode == "RGBA"
    assert image.size == (512, 512)
    alpha = np.asarray(image)[..., 3]
    assert (alpha == 0).mean() > 0.2, "a cut-out has a transparent background"
    assert (alpha > 200).mean() > 0.2, "and an opaque subject"

    page.get_by_role("link", name="Dashboard").click()
    assert page.get_by_test_id("dashboard-balance").inner_text() == "975"
    jobs_table = page.locator("#jobs-table")
    assert "astronaut.jpg" in jobs_table.inner_text()
    assert "Completed" in jobs_table.inner_text()
    page.get_by_label("New key name").fill("website")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_test_id("new-key").inner_text()
    assert new_key.split(".")[0] in page.locator("#keys-table").inner_text()
    screenshot(page, "dashboard.png")

    # A phone-width screen: nothing is wider than the screen.
    page.set_viewport_size({"width": 375, "height": 800})
    for path in ("/", "/dashboard/", f"/jobs/{job.id}/"):
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
    # The job's own page (linked from the dashboard) shows the same result.
    page.locator("#job-result").wait_for(state="visible")
    page.wait_for_function("document.getElementById('job-after').naturalWidth === 512")
    page.wait_for_timeout(400)
    screenshot(page, "result-phone.png")

    customer.refresh_from_db()
    assert customer.credit_balance == 975
    assert ledger_sum(account=customer) == 975


def test_a_gif_upload_shows_the_error_and_charges_nothing(live_server, customer, page):
    log_in(page, live_server, "alice")
    # Drop the file on the drop zone, as a person dragging it would.
    page.evaluate(
        """(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'animation.gif', {type: 'image/gif'}));
        const zone = document.getElementById('dropzone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
    }""",
        base64.b64encode(GIF_BYTES).decode(),
    )
    assert "animation.gif" in page.locator("#file-chosen").inner_text()
    page.get_by_role("button", name="Remove background").click()

    error = page.locator("#upload-error")
    error.wait_for(state="visible")
    assert error.inner_text() == (
        "Unsupported image format: gif. Supported: png, jpg, jpeg, webp, bmp, "
        "heic, heif, tiff, tif, avif. Nothing was charged."
    )
    assert page.locator("#job-panel").is_hidden()
    assert page.get_by_test_id("balance").inner_text() == "1000"
    customer.refresh_from_db()
    assert customer.credit_balance == 1000
    assert not RemovalJob.objects.exists()
    assert list(LedgerEntry.objects.values_list("kind", flat=True)) == ["grant"]


def test_an_admin_grants_credits_and_creates_a_key_that_works_against_the_api(
    live_server, account, page
):
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    log_in(page, live_server, "root", path="/admin/")

    page.goto(f"{live_server.url}/admin/accounts/account/{account.pk}/change/")
    page.get_by_role("link", name="Grant or adjust credits").first.click()
    page.get_by_label("Amount").fill("500")
    page.get_by_label("Reason").fill("Welcome bonus")
    page.get_by_role("button", name="Record in the ledger").click()
    assert "acme now has 1500 credits" in page.locator(".messagelist").inner_text()
    assert "Welcome bonus (by root)" in page.locator(".field-ledger").inner_text()
    account.refresh_from_db()
    assert account.credit_balance == 1500
    grant = LedgerEntry.objects.filter(kind="grant").order_by("-id").first()
    assert (grant.amount, grant.note) == (500, "Welcome bonus (by root)")

    page.get_by_role("link", name="Create a key for this account").click()
    page.get_by_label("Name").fill("ci-server")
    page.get_by_role("button", name="Save", exact=True).click()
    key = page.locator("code.new-api-key").inner_text()
    assert page.url == f"{live_server.url}/admin/accounts/apikey/"
    # Shown once: the next page has only the prefix.
    page.reload()
    assert key not in page.content()
    assert f"{key.split('.')[0]}…" in page.content()

    response = requests.post(
        f"{live_server.url}/paid/image/remove/background",
        headers={"x-api-key": key},
        files={"file": ("photo.jpg", photo_bytes("coffee"), "image/jpeg")},
        data={"model": "u2netp"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    account.refresh_from_db()
    assert account.credit_balance == 1475


def test_screenshots_go_to_a_folder_git_ignores():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", str(SCREENSHOTS / "upload.png")], cwd=ROOT
    )
    assert ignored.returncode == 0, f"{SCREENSHOTS} is not ignored by git"
    assert not SCREENSHOTS.resolve().is_relative_to(ROOT / "docs")


def test_the_api_docs_page_lists_the_operations_without_the_internet(live_server, page):
    """Swagger UI's files come from this server (drf-spectacular-sidecar);
    every request to another host is refused, as on an offline install."""
    elsewhere: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(f"{live_server.url}/api/docs/")
    operations = page.locator(".opblock-summary-path")
    operations.first.wait_for(state="visible")
    paths = {text.strip().replace("\u200b", "") for text in operations.all_inner_texts()}
    assert "/paid/image/remove/background" in paths
    assert "/api/get/{task_id}" in paths
    assert page.locator(".opblock-summary-method").first.inner_text() in ("GET", "POST")
    assert elsewhere == []
