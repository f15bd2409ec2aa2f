"""Several photos at once on the upload page, in a real headless Chromium at
1280 and 390 px, against the live server, a real qcluster worker and the
real u2netp model: a row per photo, each reaching "Done", then one ZIP with
the cut-outs and the manifest, charged once like the batch API."""

import base64
import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import Batch, RemovalJob
from tests.e2e.conftest import log_in
from tests.e2e.test_browser import screenshot
from tests.images import encode, photo, photo_bytes
from tests.speed import job_seconds, model_load_seconds

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.model]

PHOTOS = {
    "astronaut.jpg": photo("astronaut"),
    "coffee.jpg": photo("coffee"),
    "portrait.jpg": photo("astronaut").crop((128, 0, 384, 512)),
}


def deadline_ms(jobs: int) -> float:
    """What a worker needs for ``jobs`` photos on this machine now, with room."""
    one = job_seconds(photo_bytes("coffee"), model="u2netp")
    return (10 * model_load_seconds("u2netp") + 10 * jobs * one + 30) * 1000


def drop(page, files: dict[str, bytes]) -> None:
    """Drops the files on the drop zone, as a person dragging them would."""
    page.evaluate(
        """(files) => {
        const transfer = new DataTransfer();
        for (const [name, b64] of Object.entries(files)) {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            transfer.items.add(new File([bytes], name, {type: 'image/jpeg'}));
        }
        const zone = document.getElementById('dropzone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
    }""",
        {name: base64.b64encode(data).decode() for name, data in files.items()},
    )


@pytest.mark.parametrize("width", [1280, 390])
def test_a_customer_removes_three_backgrounds_at_once_and_downloads_one_zip(
    live_server, start_worker, customer, browser, tmp_path, width
):
    start_worker()
    paths = []
    for name, picture in PHOTOS.items():
        path = tmp_path / name
        path.write_bytes(encode(picture))
        paths.append(str(path))
    context = browser.new_context(
        viewport={"width": width, "height": 900 if width > 800 else 844}, accept_downloads=True
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    log_in(page, live_server, "alice")

    if width == 1280:
        page.set_input_files("#file-input", paths)  # chosen with the file picker
    else:
        drop(page, {Path(path).name: Path(path).read_bytes() for path in paths})
    page.select_option("#model-select", "u2netp")
    assert "3 photos" in page.locator("#file-chosen").inner_text()
    assert page.locator("#price-total").inner_text() == "75 credits (3 × 25)"
    page.get_by_role("button", name="Remove 3 backgrounds").click()

    rows = page.locator("#batch-items > li")
    page.wait_for_function(
        "document.querySelectorAll('#batch-items > li').length === 3 && "
        "[...document.querySelectorAll('#batch-items > li')]"
        ".every(row => row.dataset.status === 'completed')",
        timeout=deadline_ms(3),
    )
    assert [row.locator(".batch-name").inner_text() for row in rows.all()] == list(PHOTOS)
    for row in rows.all():
        assert row.locator(".batch-state").inner_text() == "Done"
        assert row.get_by_role("progressbar").get_attribute("aria-valuenow") == "100"
    assert page.locator("#batch-percent").inner_text() == "100 %"
    assert page.locator("#batch-message").inner_text() == "3 of 3 done"
    assert page.get_by_test_id("balance").inner_text() == "925"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if width == 1280:
        page.wait_for_timeout(400)  # let the bars' width transition finish for the picture
        screenshot(page, "batch.png")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download all (ZIP)").click()
    batch = Batch.objects.get()
    assert download_info.value.suggested_filename == f"batch-{batch.id}.zip"
    archive = zipfile.ZipFile(Path(download_info.value.path()))
    assert sorted(archive.namelist()) == sorted(
        ["astronaut.png", "coffee.png", "portrait.png", "manifest.json"]
    )
    for name, picture in PHOTOS.items():
        cutout = Image.open(io.BytesIO(archive.read(name.replace(".jpg", ".png"))))
        assert (cutout.format, cutout.mode, cutout.size) == ("PNG", "RGBA", picture.size)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["batch_id"] == str(batch.id)
    assert manifest["model"] == "u2netp"
    assert [
        (item["original_name"], item["status"], item["output_name"], item["credits_charged"])
        for item in manifest["items"]
    ] == [
        ("astronaut.jpg", "completed", "astronaut.png", 25),
        ("coffee.jpg", "completed", "coffee.png", 25),
        ("portrait.jpg", "completed", "portrait.png", 25),
    ]
    assert {item["credits_refunded"] for item in manifest["items"]} == {0}

    # Charged once for the three, like the batch API: a web batch, no key.
    assert batch.api_key is None and batch.item_count == 3
    assert RemovalJob.objects.filter(batch=batch, status="completed").count() == 3
    assert (
        sorted(LedgerEntry.objects.filter(kind="charge").values_list("amount", flat=True))
        == [-25] * 3
    )
    customer.refresh_from_db()
    assert customer.credit_balance == 925 == ledger_sum(account=customer)

    # The usage page shows the batch beside the jobs.
    page.get_by_role("link", name="Usage").click()
    assert page.get_by_test_id("batch-count").inner_text() == "1"
    assert page.get_by_test_id("batch-items").inner_text() == "3"
    assert page.get_by_test_id("batch-credits").inner_text() == "75"
    assert page.locator("#batches-table").get_by_role("link", name="ZIP").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    context.close()
