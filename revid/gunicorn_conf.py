"""gunicorn's configuration for `make serve` and docs/systemd/revid-web.service.

Usage: ``gunicorn -c python:revid.gunicorn_conf revid.wsgi:application``;
HOST, PORT, WEB_CONCURRENCY and WEB_THREADS come from the environment.

Stopping (SIGTERM, as systemd, a container runtime or a deploy sends it):
gunicorn closes its listening sockets at once, so the load balancer's next
probe of this machine fails and it sends no new request here, and each
worker process answers /readyz with 503 from then on (for a connection it
had already accepted). The requests in hand get WEB_GRACEFUL_TIMEOUT
seconds to finish, which the settings derive from the longest a request
may wait (LONGEST_REQUEST_SECONDS: the remove.bg door's synchronous
answer, a ?wait= long poll).
"""

import importlib
import os
import signal

_settings = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "revid.settings"))

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
# A request waiting for a job (?wait=, the synchronous endpoint) holds a
# thread, not a CPU: waiting clients never block /healthz, status calls or
# uploads while threads are free. A process takes no more connections than
# it has threads (queued behind waiters they would be); the others wait in
# the listen backlog for any process.
threads = int(os.environ.get("WEB_THREADS", "16"))
worker_connections = threads
keepalive = 0
# gthread's heartbeat, not a limit on a request: waiting threads are fine.
timeout = 60
graceful_timeout = _settings.WEB_GRACEFUL_TIMEOUT
max_requests = 1000
max_requests_jitter = 100
accesslog = "-"
# In this instance's own data folder, not the home folder's default: two
# instances on one machine (each with its DATA_DIR) never share one.
control_socket = str(_settings.DATA_DIR / "gunicorn.ctl")


def post_worker_init(worker) -> None:
    """Marks this worker as draining as soon as SIGTERM reaches it, before
    gunicorn's own handler, so /readyz says 503 for the rest of its life."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        from removal import health

        health.begin_draining()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn set it
