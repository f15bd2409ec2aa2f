"""Sessions: one per model per process, warmed before a worker's first job."""

import pytest

from imaging import sessions
from removal import registry


@pytest.mark.model
def test_warm_models_loads_and_runs_each_named_model():
    timings = registry.warm_models(["u2netp"])

    assert list(timings) == ["u2netp"]
    assert "u2netp" in registry.loaded_models()


def test_warm_models_skips_unknown_and_uninstalled_models(settings, tmp_path):
    settings.U2NET_HOME = tmp_path  # no weights here

    assert registry.warm_models(["no-such-model", "isnet-general-use"]) == {}


@pytest.mark.model
def test_warm_models_reads_the_warm_models_setting(settings):
    settings.WARM_MODELS = ["u2netp"]

    assert list(registry.warm_models()) == ["u2netp"]


@pytest.mark.weights
def test_sessions_are_reused_within_a_process():
    assert registry.get_session("u2netp") is registry.get_session("u2netp")


@pytest.mark.weights
@pytest.mark.parametrize("spinning, entry", [(True, "1"), (False, "0")])
def test_new_onnxruntime_sessions_follow_the_thread_settings(settings, spinning, entry):
    settings.MODEL_ENGINE = "onnxruntime"
    settings.ORT_ALLOW_SPINNING = spinning
    settings.ORT_INTRA_OP_THREADS = 1

    options = sessions._new_session(
        "u2netp", registry.engine_config()
    ).inner_session.get_session_options()

    assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
    assert options.intra_op_num_threads == 1
    # Whatever the setting, no thread spins on after a run has returned.
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


@pytest.mark.weights
@pytest.mark.parametrize("threads", [1, 2])
def test_new_openvino_sessions_run_on_the_threads_set(settings, threads):
    settings.ORT_INTRA_OP_THREADS = threads

    model = sessions._new_session("u2netp", registry.engine_config()).inner_session

    assert model._compiled.get_property("INFERENCE_NUM_THREADS") == threads


@pytest.mark.weights
def test_onnxruntime_sessions_share_one_arena_that_grows_by_what_is_asked(settings):
    # Two arenas, each doubled to its model's largest run, held 0.7 GB more
    # in a worker that ran both models (bench/notes.md).
    settings.MODEL_ENGINE = "onnxruntime"
    for name in ("u2netp", "u2net"):
        options = sessions._new_session(
            name, registry.engine_config()
        ).inner_session.get_session_options()

        assert options.get_session_config_entry("session.use_env_allocators") == "1"
        assert options.enable_mem_pattern is False
