"""How fast this machine runs a job right now, so a test's deadlines scale with it.

The suite must pass on a busy machine: a test that needs "long enough" or
"soon enough" measures the real work here first (the real pipeline and
model, in the test process) and derives its limits from that, with a wide
margin, instead of assuming a speed.
"""

import math
import time

from django.conf import settings

from imaging import pipeline, sessions
from imaging.options import DEFAULT_OPTIONS, OutputOptions
from removal import registry
from tests.images import encode, photo


def job_seconds(
    data: bytes, *, model: str, runs: int = 1, options: OutputOptions = DEFAULT_OPTIONS
) -> float:
    """The longest of ``runs`` runs of the worker's own work on ``data``, the
    model already loaded (a worker that loads it in the job takes longer)."""
    session = registry.get_session(model)
    longest = 0.0
    for _ in range(runs):
        started = time.monotonic()
        pipeline.remove_background(
            data, session, max_pixels=settings.MAX_IMAGE_PIXELS, options=options
        )
        longest = max(longest, time.monotonic() - started)
    return longest


def model_load_seconds(model: str) -> float:
    """Seconds to load ``model`` into a new session, as a worker without warm models does."""
    started = time.monotonic()
    sessions._new_session(model, registry.engine_config())
    return time.monotonic() - started


def photo_taking_at_least(
    seconds: float,
    *,
    model: str,
    name: str = "astronaut",
    side: int = 1000,
    options: OutputOptions = DEFAULT_OPTIONS,
) -> tuple[bytes, float]:
    """A square JPEG photo on which ``model`` (loaded) takes at least ``seconds``
    here, and the seconds it took; grown until it does.

    Decoding, resizing the mask and encoding the cutout grow with the pixel
    count, so a larger photo always takes longer, up to MAX_IMAGE_PIXELS.
    """
    largest = math.isqrt(settings.MAX_IMAGE_PIXELS)
    while True:
        data = encode(photo(name).resize((side, side)), "JPEG", quality=85)
        took = job_seconds(data, model=model, options=options)
        if took >= seconds:
            return data, took
        if side >= largest:
            raise AssertionError(
                f"{model} runs a {side}x{side} photo in {took:.2f}s here, under the "
                f"{seconds:.2f}s this test needs, and no larger photo is allowed"
            )
        side = min(largest, math.ceil(side * max(1.4, 1.2 * math.sqrt(seconds / took))))


def wait_while_progressing(
    remaining, *, stall: float, interval: float = 0.5, message: str = ""
) -> None:
    """Waits until ``remaining()`` is 0, failing only when it stops going down
    for ``stall`` seconds: a slow machine gets as long as it keeps working."""
    last = remaining()
    last_change = time.monotonic()
    while last:
        time.sleep(interval)
        now = remaining()
        if now < last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > stall:
            raise AssertionError(
                f"{message or 'no progress'}: {last} left, none done in the last {stall:.0f}s"
            )
