"""gunicorn's configuration for `make serve` and docs/systemd/revid-web.service.

Usage: ``gunicorn -c python:revid.gunicorn_conf revid.asgi:application``;
HOST, PORT, WEB_CONCURRENCY and WEB_THREADS come from the environment.
The worker is ASGI (``revid.server.Worker``: uvicorn, one event loop per
process): a request waiting for a job or for an ``image_url`` download
holds no thread (revid/serving.py says how requests share a process).

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

_settings = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "revid.settings"))

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "revid.server.Worker"
# Sync work (pages, the admin, an upload's parse, decode and charge) runs on
# at most WEB_THREADS threads per process (the settings read it; the rest
# queues on the loop); waiting takes none.
keepalive = 5
# The worker's heartbeat, not a limit on a request: the loop beats while
# requests wait.
timeout = 60
graceful_timeout = _settings.WEB_GRACEFUL_TIMEOUT
# No max_requests: recycling a process would cut every request waiting in it.
accesslog = "-"
# In this instance's own data folder, not the home folder's default: two
# instances on one machine (each with its DATA_DIR) never share one.
control_socket = str(_settings.DATA_DIR / "gunicorn.ctl")


def post_worker_init(worker) -> None:
    """Marks this worker as draining as soon as its server begins to stop
    (SIGTERM, SIGINT: revid.server runs the shutdown hooks first thing), so
    /readyz says 503 for the rest of its life."""
    from removal import health
    from revid import serving

    serving.on_shutdown(health.begin_draining)
