"""The settings a scaled-out deployment depends on, as a process started with
its environment sees them (docs/deploy.md)."""

import pytest

from tests.conftest import django_start_error
from tests.revid.test_settings import settings_in_a_subprocess

BUCKET = {"AWS_STORAGE_BUCKET_NAME": "revid-files"}


def test_downloads_redirect_to_the_bucket_by_default_once_there_is_one():
    field = "{'redirect': settings.OUTPUT_REDIRECT_TO_STORAGE}"
    assert settings_in_a_subprocess(BUCKET, field) == {"redirect": True}
    assert settings_in_a_subprocess({**BUCKET, "OUTPUT_REDIRECT_TO_STORAGE": "0"}, field) == {
        "redirect": False
    }
    assert settings_in_a_subprocess({}, field) == {"redirect": False}  # local files


QUEUE_FIELDS = (
    "{'limit': settings.Q_CLUSTER['queue_limit'], "
    "'webhooks': settings.Q_CLUSTER['ALT_CLUSTERS']['webhooks']['queue_limit'], "
    "'housekeeping': settings.Q_CLUSTER['ALT_CLUSTERS']['housekeeping'], "
    "'grace': settings.WORKER_STOP_GRACE_SECONDS, 'timeout': settings.Q_CLUSTER['timeout']}"
)


def test_a_cluster_holds_as_many_tasks_ahead_as_it_has_workers_not_their_square():
    seen = settings_in_a_subprocess({"Q_WORKERS": "8", "WEBHOOK_WORKERS": "6"}, QUEUE_FIELDS)
    assert seen["limit"] == 8  # django-q2's default would hold 64
    assert seen["webhooks"] == 6
    assert seen["housekeeping"]["workers"] == 1
    assert seen["housekeeping"]["queue_limit"] == 1
    assert settings_in_a_subprocess({"Q_QUEUE_LIMIT": "2"}, QUEUE_FIELDS)["limit"] == 2


def test_the_worker_stop_grace_covers_the_longest_task():
    seen = settings_in_a_subprocess({"REMOVAL_JOB_TIMEOUT": "120"}, QUEUE_FIELDS)
    assert seen["grace"] > seen["timeout"] > 120


WEB_FIELDS = "{'longest': settings.LONGEST_REQUEST_SECONDS, 'grace': settings.WEB_GRACEFUL_TIMEOUT}"


def test_the_web_servers_graceful_stop_covers_the_longest_waiting_request():
    seen = settings_in_a_subprocess({}, WEB_FIELDS)
    # remove.bg's synchronous door: image fetch 10 + queue wait 60 + job 60 + grace 30.
    assert seen["longest"] == 160
    assert seen["grace"] >= seen["longest"]
    longer = settings_in_a_subprocess({"REMOVEBG_QUEUE_WAIT_SECONDS": "300"}, WEB_FIELDS)
    assert longer["grace"] >= longer["longest"] == 400


def test_a_graceful_stop_shorter_than_the_longest_request_fails_loudly_at_start():
    stderr = django_start_error({"WEB_GRACEFUL_TIMEOUT": "30"})
    assert "WEB_GRACEFUL_TIMEOUT (30) must cover the longest request, 160 s" in stderr


def test_behind_a_transaction_pooler_server_side_cursors_are_off():
    fields = "{'off': settings.DATABASES['default'].get('DISABLE_SERVER_SIDE_CURSORS', False)}"
    url = {"DATABASE_URL": "postgres://revid@pgbouncer.internal:6432/revid"}
    assert settings_in_a_subprocess({**url, "DB_TRANSACTION_POOLER": "1"}, fields) == {"off": True}
    assert settings_in_a_subprocess(url, fields) == {"off": False}


def test_listen_through_a_transaction_pooler_is_refused_at_start():
    stderr = django_start_error(
        {
            "DATABASE_URL": "postgres://revid@pgbouncer.internal:6432/revid",
            "DB_TRANSACTION_POOLER": "1",
            "WAIT_BACKEND": "postgres",
        }
    )
    assert "cannot LISTEN through a transaction pooler" in stderr
    assert "WAIT_DATABASE_URL" in stderr


def test_a_direct_listen_connection_beside_a_pooler_is_accepted():
    seen = settings_in_a_subprocess(
        {
            "DATABASE_URL": "postgres://revid@pgbouncer.internal:6432/revid",
            "DB_TRANSACTION_POOLER": "1",
            "WAIT_BACKEND": "postgres",
            "WAIT_DATABASE_URL": "postgres://revid@db.internal:5432/revid",
        },
        "{'url': settings.WAIT_DATABASE_URL}",
    )
    assert seen == {"url": "postgres://revid@db.internal:5432/revid"}


def test_secret_key_fallbacks_are_read_as_a_list():
    seen = settings_in_a_subprocess(
        {"SECRET_KEY_FALLBACKS": "old-key-1, old-key-2"},
        "{'fallbacks': settings.SECRET_KEY_FALLBACKS}",
    )
    assert seen == {"fallbacks": ["old-key-1", "old-key-2"]}


@pytest.mark.parametrize("rate", ["2", "-0.1", "often"])
def test_a_bad_sentry_sample_rate_fails_loudly_at_start(rate):
    stderr = django_start_error({"SENTRY_TRACES_SAMPLE_RATE": rate})
    assert "SENTRY_TRACES_SAMPLE_RATE must be a number from 0 to 1" in stderr
