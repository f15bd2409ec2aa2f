"""The image's HEALTHCHECK: is this container doing its job?

web: ``GET /healthz`` answers 200 on $PORT. worker, webhook-worker: their
qcluster runs, with at least one worker process beside it (django-q2 starts
them; a cluster whose processes died has none). Exit 0 when healthy, 1 not.
No Django here: a check every 30 s must cost next to nothing.
"""

import os
import sys
import urllib.request
from pathlib import Path


def web_answers() -> bool:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return response.status == 200
    except OSError:
        return False


def qcluster_runs() -> bool:
    commands = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            commands.append(entry.read_bytes())
        except OSError:  # it just exited
            continue
    # The qcluster main process and its sentinel, monitor and workers share
    # its command line (multiprocessing forks them).
    return sum(b"qcluster" in command for command in commands) >= 2


def main() -> int:
    try:
        role = Path("/tmp/revid-role").read_text().strip()
    except OSError:
        role = "web"
    if role == "web":
        return 0 if web_answers() else 1
    if role in ("worker", "webhook-worker"):
        return 0 if qcluster_runs() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
