"""Sessions: one per model per process, warmed before a worker's first job."""

import pytest

from removal import registry

pytestmark = pytest.mark.model


def test_warm_models_loads_and_runs_each_named_model():
    timings = registry.warm_models(["u2netp"])

    assert list(timings) == ["u2netp"]
    assert "u2netp" in registry.loaded_models()


def test_warm_models_skips_unknown_and_uninstalled_models(settings, tmp_path):
    settings.U2NET_HOME = tmp_path  # no weights here

    assert registry.warm_models(["no-such-model", "isnet-general-use"]) == {}


def test_warm_models_reads_the_warm_models_setting(settings):
    settings.WARM_MODELS = ["u2netp"]

    assert list(registry.warm_models()) == ["u2netp"]


def test_sessions_are_reused_within_a_process():
    assert registry.get_session("u2netp") is registry.get_session("u2netp")


def test_sessions_do_not_spin_between_operators_by_default():
    session = registry.get_session("u2netp")
    entries = session.inner_session.get_session_options().get_session_config_entry
    assert entries("session.intra_op.allow_spinning") == "0"
