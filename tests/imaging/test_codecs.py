"""Every output format has exactly one encoder, and each writes its own format."""

import io

import numpy as np
from PIL import Image

from imaging.codecs import ENCODERS, encode
from imaging.formats import OUTPUT_FORMATS, sniff_format


def test_every_output_format_has_an_encoder_and_no_encoder_lacks_a_format():
    assert set(ENCODERS) == set(OUTPUT_FORMATS)


def test_each_encoder_writes_the_format_its_row_names():
    pixels = np.random.default_rng(1).integers(0, 256, (24, 32, 4), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGBA")
    expected = {"png": "png", "jpg": "jpeg", "webp": "webp", "zip": "unknown"}
    for name in OUTPUT_FORMATS:
        data = encode(img, name)
        if name == "zip":
            assert data[:2] == b"PK"
        else:
            assert sniff_format(data[:64]) == expected[name], name
            assert Image.open(io.BytesIO(data)).size == (32, 24), name
