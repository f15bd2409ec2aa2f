"""How many PostgreSQL connections a deployment holds at its peak.

Each holder keeps its connection between uses (DB_CONN_MAX_AGE), so the
peak is what every process could hold at once, not what it uses on average:

- a web process (ASGI, revid/serving.py): one per thread running sync
  work (at most WEB_THREADS at once; a request's connection closes with
  it), one per thread of the wait sweep (removal.wait_listeners.DB_THREADS,
  each keeps its own), plus the LISTEN connection with
  WAIT_BACKEND=postgres;
- a qcluster: one per worker process (Q_WORKERS, WEBHOOK_WORKERS), plus the
  sentinel's (the scheduler) and the monitor's (saving results), plus the
  pusher's on the ORM broker (no REDIS_URL);
- a worker machine (`make worker`) runs the removal cluster and the
  one-worker housekeeping cluster; a webhook machine (`make webhook-worker`)
  the webhook cluster and a housekeeping cluster;
- a rolling deploy starts new processes before the old ones have drained:
  the largest machine's share again for each machine replaced at once;
- a few for `migrate`, management commands and an operator's psql.

``budget()`` adds these up; ``manage.py connection_budget`` prints the sum
next to the server's max_connections.
"""

from __future__ import annotations

from dataclasses import dataclass

# migrate, management commands, an operator's psql, a monitoring agent.
ADMIN_RESERVE = 5


@dataclass(frozen=True)
class Topology:
    """The deployment: how many machines of each kind, and their sizes."""

    web_machines: int
    worker_machines: int
    webhook_machines: int
    web_processes: int
    web_threads: int
    q_workers: int
    webhook_workers: int
    orm_broker: bool
    wait_backend: str
    wait_threads: int
    deploy_batch: int = 1


@dataclass(frozen=True)
class Budget:
    lines: list[tuple[str, int]]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.lines)


def cluster_connections(workers: int, *, orm_broker: bool) -> int:
    """One qcluster: its workers, the sentinel, the monitor (and the ORM pusher)."""
    return workers + 2 + (1 if orm_broker else 0)


def budget(topology: Topology) -> Budget:
    t = topology
    listener = 1 if t.wait_backend == "postgres" else 0
    web = t.web_processes * (t.web_threads + t.wait_threads + listener)
    housekeeping = cluster_connections(1, orm_broker=t.orm_broker)
    worker = cluster_connections(t.q_workers, orm_broker=t.orm_broker) + housekeeping
    webhook = cluster_connections(t.webhook_workers, orm_broker=t.orm_broker) + housekeeping
    largest = max(
        web if t.web_machines else 0,
        worker if t.worker_machines else 0,
        webhook if t.webhook_machines else 0,
    )
    return Budget(
        [
            (
                f"web: {t.web_machines} machine(s) x {t.web_processes} process(es) x "
                f"({t.web_threads} threads + {t.wait_threads} wait sweep threads + "
                f"{listener} wait listener)",
                t.web_machines * web,
            ),
            (
                f"workers: {t.worker_machines} machine(s) x ({t.q_workers} workers + 2 + "
                f"housekeeping 3{' + ORM pushers 2' if t.orm_broker else ''})",
                t.worker_machines * worker,
            ),
            (
                f"webhook workers: {t.webhook_machines} machine(s) x ({t.webhook_workers} "
                f"workers + 2 + housekeeping 3{' + ORM pushers 2' if t.orm_broker else ''})",
                t.webhook_machines * webhook,
            ),
            (
                f"rolling deploy: {t.deploy_batch} machine(s) replaced at once x "
                f"the largest machine ({largest})",
                t.deploy_batch * largest,
            ),
            ("migrate, management commands, psql", ADMIN_RESERVE),
        ]
    )
