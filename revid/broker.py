"""django-q2's ORM broker, woken on enqueue instead of waiting out its poll.

The ORM broker (the embedded default: no Redis) looks for tasks every
``Q_POLL_MS``; a job submitted just after a look waits for the next one
(half the interval on average, all of it at worst), a visible share of a
0.3 MP job, and polling faster costs a query each time.

Here the cluster's pusher, between looks, waits on its doorbell in
``QUEUE_WAKE_DIR`` (``revid.doorbell``), and ``enqueue`` rings every bell
there once the task's row is committed: a pusher on the same machine
looks again at once. The poll stays the fallback (an enqueue from another
machine, a lost ring); on SQLite, where no enqueue comes from elsewhere,
it looks only every LOCAL_WAKE_FALLBACK_MS (``doorbell.between_looks``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django_q.brokers.orm import ORM
from django_q.conf import Conf

from revid.doorbell import Doorbell, between_looks, ring_all

_doorbell: Doorbell | None = None


def doorbell() -> Doorbell:
    global _doorbell
    if _doorbell is None or _doorbell.folder != settings.QUEUE_WAKE_DIR:
        _doorbell = Doorbell(settings.QUEUE_WAKE_DIR)
    return _doorbell


def wake_pushers() -> int:
    """Rings every waiting pusher on this machine; returns how many were reached."""
    return ring_all(settings.QUEUE_WAKE_DIR)


class WakingORM(ORM):
    """The ORM broker whose idle wait ends as soon as a task is enqueued here."""

    def enqueue(self, task):
        pk = super().enqueue(task)
        # After commit: rung before the row is visible, the pusher would
        # find nothing and wait a whole poll.
        transaction.on_commit(wake_pushers)
        return pk

    def dequeue(self):
        # The parent's query without its sleep on an empty queue (one
        # pusher process, one thread: nobody else reads Conf.POLL meanwhile).
        poll, Conf.POLL = Conf.POLL, 0
        try:
            tasks = super().dequeue()
        finally:
            Conf.POLL = poll
        if tasks:
            return tasks
        bell = doorbell()
        bell.wait(between_looks(Conf.POLL, bell))
        return None
