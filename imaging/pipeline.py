"""Bytes in, the finished file out: what the worker runs for one job.

decode (``reading``) -> mask (``model``) -> finish (``finishing``: matting,
compositing, geometry, encoding), reporting progress and honouring a
deadline. No Django: settings arrive as arguments.

A batch runs the same steps in three calls (``prepare``, ``predict``,
``finish_prediction``) so that one image is prepared and another finished
while the model runs: the same functions in the same order, the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imaging.errors import DeadlineExceeded
from imaging.finishing import Finished, finish_taking
from imaging.model import mask_from_prediction, predict_mask, prepare_input, run_model
from imaging.options import DEFAULT_OPTIONS, OutputOptions
from imaging.reading import decode_for_model

ProgressCallback = Callable[[int, str], None]

# Images smaller than this finish too fast for progress to be worth its writes.
PROGRESS_MIN_PIXELS = 2_000_000

# The stage each progress step starts, for ``remove_background(timings=...)``
# (``imaging.finishing`` reports 60, 80 and 90; 95 is the end).
_STAGE_STARTING_AT = {50: "model", 60: "matting", 80: "composite", 90: "encode", 95: "done"}


def remove_background(
    data: bytes,
    session,
    *,
    max_pixels: int,
    options: OutputOptions = DEFAULT_OPTIONS,
    background: bytes | None = None,
    on_progress: ProgressCallback | None = None,
    deadline: float | None = None,
    timings: dict[str, float] | None = None,
) -> Finished:
    """Runs the whole removal; ``deadline`` is a ``time.monotonic()`` value.

    ``options`` (see ``imaging.options``) shape the file; the defaults give
    the same PNG, byte for byte and as fast, as before they existed.
    ``background`` is the background image's bytes (``options.bg_image``),
    read with the same limits as the image.
    ``timings``, if given, receives the seconds of each stage (decode, model,
    matting, composite, encode): where a job's time went, for the job's
    record and the benchmark.
    """
    stage_started = ["decode", time.perf_counter()]

    def check() -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("Processing took longer than the time limit.")

    # Each report is a database write in the worker; an image that is done
    # in well under a second reports none (the claim shows 5 %, completion 100 %).
    report = on_progress

    def step(percent: int, message: str) -> None:
        check()
        if timings is not None and percent in _STAGE_STARTING_AT:
            now = time.perf_counter()
            name, started = stage_started
            timings[name] = timings.get(name, 0.0) + now - started
            stage_started[:] = [_STAGE_STARTING_AT[percent], now]
        if report is not None:
            report(percent, message)

    check()
    img = decode_for_model(data, max_pixels=max_pixels)
    backdrop = None
    if background is not None:
        backdrop = decode_for_model(background, max_pixels=max_pixels)
    if img.width * img.height < PROGRESS_MIN_PIXELS:
        report = None
    step(50, "Removing background from image...")
    mask = predict_mask(img, session)
    # Handed over as a list so finishing can drop them before it encodes.
    parts = [img, mask]
    del img, mask
    finished = finish_taking(parts, options, background=backdrop, on_step=step, check=check)
    step(95, "Saving result...")
    return finished


@dataclass
class Prepared:
    """One image decoded and turned into the model's input, ready to run."""

    img: Image.Image
    tensor: np.ndarray | None  # None: the session keeps its own ``predict``
    backdrop: Image.Image | None = None


def prepare(data: bytes, session, *, max_pixels: int, background: bytes | None = None) -> Prepared:
    """Decodes the image (and background) and builds the model's input: ``remove_background``'s
    decode stage and the model stage's preprocessing."""
    img = decode_for_model(data, max_pixels=max_pixels)
    backdrop = None
    if background is not None:
        backdrop = decode_for_model(background, max_pixels=max_pixels)
    return Prepared(img=img, tensor=prepare_input(img, session), backdrop=backdrop)


def predict(prepared: Prepared, session) -> np.ndarray | Image.Image:
    """The model run alone (onnxruntime releases the GIL): the raw prediction,
    or the finished mask from a session that keeps its own ``predict``."""
    if prepared.tensor is None:
        return predict_mask(prepared.img, session)
    return run_model(prepared.tensor, session)


def finish_prediction(
    prepared: Prepared,
    prediction: np.ndarray | Image.Image,
    options: OutputOptions = DEFAULT_OPTIONS,
    *,
    check: Callable[[], None] | None = None,
) -> Finished:
    """The mask from the prediction, then the file the options ask for; consumes ``prepared``."""
    if isinstance(prediction, Image.Image):
        mask = prediction
    else:
        mask = mask_from_prediction(prediction, prepared.img.size)
    parts = [prepared.img, mask]
    prepared.img = prepared.tensor = None
    return finish_taking(parts, options, background=prepared.backdrop, check=check)
