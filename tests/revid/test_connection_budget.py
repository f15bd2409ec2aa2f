"""The connection budget: the formula docs/deploy.md works through, and the
command that compares it with the server's max_connections."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from removal.wait_listeners import DB_THREADS
from revid.connection_budget import Topology, budget

GUIDE_EXAMPLE = Topology(
    web_machines=2,
    worker_machines=4,
    webhook_machines=1,
    web_processes=4,
    web_threads=16,
    q_workers=4,
    webhook_workers=2,
    orm_broker=False,
    wait_backend="redis",
    wait_threads=DB_THREADS,
)


def test_the_guides_example_needs_288_connections():
    assert DB_THREADS == 4  # as the guide counts them
    lines = [count for _, count in budget(GUIDE_EXAMPLE).lines]
    # web 2 x 4 x (16 + 4 sweep threads); workers 4 x (4 + 2 + housekeeping 3);
    # webhooks 2 + 2 + 3; one web machine's worth during a rolling deploy; 5
    # for the operator.
    assert lines == [160, 36, 7, 80, 5]
    assert budget(GUIDE_EXAMPLE).total == 288


def test_listeners_and_the_orm_broker_add_their_connections():
    from dataclasses import replace

    on_postgres = replace(GUIDE_EXAMPLE, orm_broker=True, wait_backend="postgres")
    lines = [count for _, count in budget(on_postgres).lines]
    assert lines == [2 * 4 * 21, 4 * (5 + 2 + 4), 2 + 3 + 4, 84, 5]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("connection_budget", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_prints_the_sum_for_the_given_machines():
    output = run(
        *("--web-machines", "2", "--worker-machines", "2", "--webhook-machines", "1"),
        *("--web-processes", "1", "--web-threads", "4", "--q-workers", "2"),
        *("--webhook-workers", "1"),
    )
    assert "web: 2 machine(s) x 1 process(es) x (4 threads + 4 wait sweep threads + " in output
    assert "at the peak" in output


@pytest.mark.skipif(connection.vendor != "postgresql", reason="max_connections is PostgreSQL's")
@pytest.mark.django_db
def test_the_command_fails_when_the_peak_exceeds_max_connections():
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
    assert "Fits" in run("--web-machines", "1", "--web-processes", "1", "--web-threads", "4")
    with pytest.raises(CommandError, match="raise max_connections"):
        run("--web-machines", str(max_connections), "--web-processes", "1")
