"""The suite's own fixtures (tests/conftest.py)."""

import os
import subprocess
import sys

from tests.conftest import ROOT, free_port

REDIS_TEST = "tests/removal/test_health.py::test_readyz_is_ready_on_redis_and_s3"


def test_without_redis_only_the_redis_tests_skip_and_say_why():
    nothing_there = f"redis://127.0.0.1:{free_port()}/6"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", REDIS_TEST]
        + ["tests/removal/test_health.py::test_healthz_answers_ok_without_touching_the_database"],
        cwd=ROOT,
        env={**os.environ, "TEST_REDIS_URL": nothing_there},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout, result.stdout
    assert f"needs Redis, and none answers at {nothing_there}" in result.stdout
