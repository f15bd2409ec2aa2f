"""Where a submission's images come from (removal/image_sources.py): the
async path an async door takes for ``image_url`` and ``bg_image_url``,
against a real server on loopback. The blocking path's rules are tested
through the doors (tests/doors, tests/removal/test_submissions.py)."""

import asyncio
import base64
import threading

import pytest
from asgiref.sync import async_to_sync

from imaging.options import SEED
from removal import image_sources, submissions
from removal.submissions import Fields
from tests.removal.conftest import PNG

PNG_B64 = base64.b64encode(PNG).decode()


def checked(**fields) -> submissions.CheckedRequest:
    return submissions.check_request(
        fields=Fields(fields),
        door=SEED,
        model_name=None,
        idempotency_key=None,
        webhook_url=None,
        origin="api",
    )


def test_both_urls_are_left_to_fetch_and_fetched_on_the_loop(remote, db):
    request = checked(image_url=remote.url("/image.png"), bg_image_url=remote.url("/image.png"))
    assert request.source == remote.url("/image.png")
    assert request.background == remote.url("/image.png")
    source, background = async_to_sync(submissions.adownload_images)(request)
    assert (source.data, source.name) == (PNG, "image.png")
    assert background.data == PNG
    done = submissions.finish_request(request, source, background)
    assert done.background_image is not None and done.options.bg_image


def test_a_background_url_is_refused_with_the_backgrounds_own_code(remote, db):
    request = checked(image_file_b64=PNG_B64, bg_image_url=remote.url("/missing.png"))
    with pytest.raises(image_sources.ImageDownloadFailed) as info:
        async_to_sync(submissions.adownload_images)(request)
    assert info.value.code == "failed_bg_image_download"


def test_twenty_slow_backgrounds_at_once_hold_no_thread(remote, db, settings):
    """A slow remote never holds a request thread: twenty submissions whose
    background trickles wait together on one loop, and time out there."""
    settings.OUTBOUND_TIMEOUT_SECONDS = 2
    counts = []

    async def many():
        requests = [
            submissions.adownload_images(
                checked(image_file_b64=PNG_B64, bg_image_url=remote.url("/slow.png"))
            )
            for _ in range(20)
        ]
        gathered = asyncio.gather(*requests, return_exceptions=True)
        await asyncio.sleep(1)
        counts.append(threading.active_count())
        return await gathered

    before = threading.active_count()
    results = async_to_sync(many)()
    assert all(
        isinstance(r, image_sources.ImageDownloadFailed) and r.code == "failed_bg_image_download"
        for r in results
    ), [(r.code, str(r)) for r in results]
    # The remote's own threads (one per slow connection) are in this process
    # too; the downloads add at most the resolver's pool and the loop's thread.
    from outbound import async_fetcher

    assert counts[0] - before <= 20 + async_fetcher.RESOLVER_THREADS + 2
