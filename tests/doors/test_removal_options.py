"""The options summary the job page, the dashboard and the upload page show."""

import pytest

from doors.templatetags.removal_options import options_summary, summarize
from imaging.options import OutputOptions
from imaging.parsers import parse_crop_margin, parse_roi
from tests.job_factory import submitted_job


def summary_of(**options) -> str:
    value = OutputOptions(**options)
    return summarize(options=value.to_json(), output_format=value.format)


def test_the_defaults_say_so():
    assert summary_of() == "PNG · full size, transparent"
    assert summarize(options={}, output_format="png") == "PNG · full size, transparent"


def test_each_seed_option_is_named():
    assert summary_of(
        format="jpg",
        bg_color=(30, 144, 255, 255),
        crop=True,
        crop_margin=parse_crop_margin("10%"),
        max_pixels=250_000,
    ) == ("JPG · background #1e90ff · crop, margin 10% · preview")
    assert summary_of(channels="alpha", max_width=400) == "PNG · mask only · max 400 × – px"
    assert summary_of(crop=True) == "PNG · crop"
    assert summary_of(bg_color=(255, 0, 0, 128)) == "PNG · background #ff000080"
    assert summary_of(alpha_matting=True, post_process_mask=True) == (
        "PNG · alpha matting · smoothed mask"
    )
    assert summary_of(alpha_matting=True, alpha_matting_erode_size=5) == (
        "PNG · alpha matting (240/10/erode 5)"
    )


def test_remove_bgs_options_are_named_too():
    assert summary_of(
        format="webp",
        roi=parse_roi("0 0 50% 100%"),
        scale=50.0,
        position=(0.0, 100.0),
        max_pixels=1_500_000,
        crop_margin=parse_crop_margin("10px 20px"),
        crop=True,
    ) == (
        "WEBP · crop, margin 10px 20px 10px 20px · at most 1,500,000 pixels · "
        "region 0px 0px 50% 100% · scale 50% · position 0% 100%"
    )


@pytest.mark.weights
def test_the_filter_reads_a_jobs_options(db, account):
    job = submitted_job(account, format="webp", size="preview")
    assert options_summary(job) == "WEBP · preview"
