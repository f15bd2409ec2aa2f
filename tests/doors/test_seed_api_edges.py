"""The seed API's edge options (issue 20) over HTTP, checked on the pixels.

``decontaminate`` (edge colours cleaned, on by default) and ``refine=edges``,
with the real u2netp on a real photo, run by ``inline_worker`` and downloaded
as a customer would (helpers shared from seed_requests.py).
"""

import io

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from imaging import pipeline
from imaging.options import OutputOptions
from removal import registry
from tests.doors.seed_requests import (
    MODEL,
    PHOTO,
    assert_refused,
    default_alpha,
    default_png,
    post,
    run,
)

pytestmark = [pytest.mark.model]


@pytest.fixture
def client(api_client, inline_worker):
    """The API client, with jobs run at once in this process."""
    return api_client


def rgba_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def test_decontaminate_false_gives_the_png_from_before_edge_cleaning(client):
    session = registry.get_session(MODEL)
    expected = pipeline.remove_background(
        PHOTO,
        session,
        max_pixels=settings.MAX_IMAGE_PIXELS,
        options=OutputOptions(decontaminate=False),
    ).data
    got = run(client, {"decontaminate": "false"})
    assert got.data == expected
    assert got.result["options"] == {"decontaminate": False}
    # The same mask; the colours differ only in its soft band.
    cleaned, plain = rgba_of(default_png()), rgba_of(got.data)
    assert np.array_equal(plain[..., 3], cleaned[..., 3])
    alpha = cleaned[..., 3]
    changed = (plain != cleaned).any(axis=-1)
    assert changed.any()
    assert not changed[(alpha == 0) | (alpha > 250)].any()


def test_decontaminate_true_is_the_default(client):
    got = run(client, {"decontaminate": "true"})
    assert got.data == default_png()
    assert got.result["options"] == {}


def test_refine_edges_moves_only_the_soft_band_of_the_mask(client):
    got = run(client, {"refine": "edges"})
    assert got.result["options"] == {"refine": "edges"}
    before, after = default_alpha(), rgba_of(got.data)[..., 3]
    sure = (before == 0) | (before == 255)
    assert np.array_equal(after[sure], before[sure])
    assert (after != before).sum() > 1000


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"refine": "sharp"}, "invalid_refine"),
        ({"decontaminate": "maybe"}, "invalid_decontaminate"),
    ],
)
def test_bad_edge_options_are_refused_before_the_charge(client, account, data, code):
    (name,) = data
    assert_refused(post(client, data), 400, code, account, names=name)
