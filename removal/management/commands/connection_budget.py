"""Checks that a deployment's peak of database connections fits the server.

Run it on any machine with the production environment, saying how many
machines of each kind the deployment has; the sizes of each come from this
machine's environment unless given (WEB_CONCURRENCY, WEB_THREADS,
Q_WORKERS, WEBHOOK_WORKERS). Exits 1, with the numbers, when the peak
exceeds what PostgreSQL lets ordinary users open.
"""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from removal import wait_listeners, waiting
from revid.connection_budget import Topology, budget


class Command(BaseCommand):
    help = "Compare the deployment's peak database connections with PostgreSQL's max_connections."

    def add_arguments(self, parser):
        parser.add_argument("--web-machines", type=int, default=1)
        parser.add_argument("--worker-machines", type=int, default=1)
        parser.add_argument("--webhook-machines", type=int, default=1)
        parser.add_argument(
            "--deploy-batch",
            type=int,
            default=1,
            help="machines a rolling deploy replaces at once (their old and new processes overlap)",
        )
        parser.add_argument(
            "--web-processes", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2"))
        )
        parser.add_argument(
            "--web-threads", type=int, default=int(os.environ.get("WEB_THREADS", "16"))
        )
        parser.add_argument("--q-workers", type=int, default=settings.Q_WORKERS)
        parser.add_argument("--webhook-workers", type=int, default=settings.WEBHOOK_WORKERS)

    def handle(self, *args, **options):
        topology = Topology(
            web_machines=options["web_machines"],
            worker_machines=options["worker_machines"],
            webhook_machines=options["webhook_machines"],
            web_processes=options["web_processes"],
            web_threads=options["web_threads"],
            q_workers=options["q_workers"],
            webhook_workers=options["webhook_workers"],
            orm_broker=not settings.REDIS_URL,
            wait_backend=waiting.backend_name(),
            wait_threads=wait_listeners.DB_THREADS,
            deploy_batch=options["deploy_batch"],
        )
        peak = budget(topology)
        for label, count in peak.lines:
            self.stdout.write(f"{count:6d}  {label}")
        self.stdout.write(f"{peak.total:6d}  at the peak")
        if connection.vendor != "postgresql":
            self.stdout.write(f"The database is {connection.vendor}: no connection limit to check.")
            return
        available = self._available()
        if settings.DB_TRANSACTION_POOLER:
            self.stdout.write(
                f"Behind a transaction pooler: the pooler's max_client_conn must be at least "
                f"{peak.total}; PostgreSQL itself allows {available} (the pooler's pool sizes, "
                "plus the wait listeners' direct connections, must fit in that)."
            )
            return
        if peak.total > available:
            raise CommandError(
                f"{peak.total} connections at the peak, but PostgreSQL allows {available} "
                "(max_connections less its reserved ones): raise max_connections, lower "
                "WEB_THREADS or WEB_CONCURRENCY, or put PgBouncer in front (docs/deploy.md)."
            )
        self.stdout.write(f"Fits: PostgreSQL allows {available}.")

    def _available(self) -> int:
        """Connections PostgreSQL lets non-superusers open."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, setting::int FROM pg_settings WHERE name IN "
                "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
            )
            values = dict(cursor.fetchall())
        return (
            values["max_connections"]
            - values.get("superuser_reserved_connections", 0)
            - values.get("reserved_connections", 0)
        )
