"""Runs ``manage.py qcluster`` so that a stop request reaches its main process only.

`make run` starts the worker under honcho (see the Procfile), and honcho stops
each process by sending SIGTERM to its whole process group. django-q2 cannot
take that: its sentinel and worker processes die at once on SIGTERM, and the
main process, stopping them, deadlocks on the stop event one of them held
(measured: a group SIGTERM left qcluster hung 5 times out of 5; a SIGTERM to
the main process alone stopped it in under a second, every time). So this
wrapper runs qcluster in a process group of its own and turns any number of
SIGTERM/SIGINT into exactly one SIGTERM to qcluster's main process, which then
stops its children in order, finishing the job in hand first.

If honcho loses patience and SIGKILLs this wrapper (5 s after its SIGTERM),
qcluster, already stopping, carries on and exits when its job is done; honcho
and `make run` wait for it, since it still holds their output pipe.

Usage: ``python -m revid.run_worker [qcluster options]``.
"""

import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"


def main(argv: list[str]) -> int:
    child = subprocess.Popen(
        [sys.executable, str(MANAGE_PY), "qcluster", *argv], start_new_session=True
    )
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:  # a second signal could catch django-q2 mid-stop
            return
        stopping = True
        child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    returncode = child.wait()
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
