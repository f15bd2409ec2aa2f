"""Alpha matting's kernels, compiled in a thread of each removal worker."""

import logging
import threading

from removal import warmup


def matting_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "warm-matting"]


def test_a_removal_worker_warms_alpha_matting_in_the_background(settings, caplog):
    settings.WARM_MODELS = ["u2netp"]
    with caplog.at_level(logging.INFO, logger="removal.warmup"):
        warmup.warm_matting_on_worker_spawn(sender="django_q", proc_name="Worker-1")
        for thread in matting_threads():
            thread.join(timeout=600)
    assert any("Alpha matting warm in" in record.message for record in caplog.records)


def test_the_webhook_cluster_warms_nothing(settings):
    settings.WARM_MODELS = []  # what revid/settings.py sets for Q_CLUSTER_NAME=webhooks
    warmup.warm_matting_on_worker_spawn(sender="django_q", proc_name="Worker-1")
    assert matting_threads() == []
