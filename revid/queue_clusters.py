"""django-q2's clusters: the removal queue, the webhook deliveries and housekeeping.

revid/settings.py reads the knobs from the environment; this builds the
Q_CLUSTER dict from them, with the reasons for each derived limit.
"""

# Deliveries run on their own cluster (`Q_CLUSTER_NAME=webhooks python
# manage.py qcluster`), so a slow or dead receiver never holds the worker
# that removes backgrounds.
WEBHOOK_CLUSTER = "webhooks"
# The reaper (fail_stale_jobs) and the expiry run on a queue of their own,
# so a backlog of removals never delays them: `make worker` and `make
# webhook-worker` each run this one-process cluster beside their own
# (revid/run_worker.py --housekeeping); their schedules name it.
HOUSEKEEPING_CLUSTER = "housekeeping"
# The most one expiry or orphan sweep run may take: it stops between
# batches past it and the next run carries on.
HOUSEKEEPING_RUN_SECONDS = 240


def queue_clusters(
    *,
    workers: int,
    queue_limit: int,
    poll_ms: int,
    job_timeout: int,
    stale_grace: int,
    redis_url: str,
    local_wake: bool,
    webhook_workers: int,
    webhook_timeout: int,
) -> dict:
    """Q_CLUSTER: the removal cluster, with the webhook and housekeeping ones as ALT_CLUSTERS."""
    cluster = {
        "name": "revid",
        "workers": workers,
        # The worker enforces REMOVAL_JOB_TIMEOUT itself; django-q2's hard
        # timeout is a backstop a little later, and retry (redelivery of a
        # task whose worker died) must be longer than it and than the stale
        # grace, so a redelivered job can be claimed again.
        "timeout": job_timeout + max(1, stale_grace // 2),
        "retry": job_timeout + stale_grace + 5,
        "max_attempts": 2,
        # Tasks a cluster takes off the broker ahead of its workers
        # (django-q2's default is workers squared). Held tasks are lost with
        # a crashed machine on Redis (the reaper refunds them
        # REMOVAL_QUEUE_TIMEOUT later), wait behind a slow job while another
        # machine idles, and a stopping worker hands them back
        # (revid/run_worker.py): keep it small.
        "queue_limit": queue_limit,
        "recycle": 500,
        "save_limit": 1000,
        "ack_failures": True,
        "catch_up": False,
        "poll": poll_ms / 1000,
        "label": "Task queue",
    }
    if redis_url:
        cluster["redis"] = redis_url
    else:
        cluster["orm"] = "default"
        if local_wake:
            # The worker's queue reader wakes on the web's doorbell
            # (revid/broker.py) instead of waiting for the next poll.
            cluster["broker_class"] = "revid.broker.WakingORM"
    cluster["ALT_CLUSTERS"] = {
        WEBHOOK_CLUSTER: {
            "workers": webhook_workers,
            # deliver() bounds each attempt itself; this is the backstop. A
            # task lost with its worker is found again by the sweep
            # schedule, so django-q2 need not redeliver it.
            "timeout": webhook_timeout + 20,
            "retry": webhook_timeout + 40,
            "max_attempts": 1,
            "queue_limit": webhook_workers,
        },
        HOUSEKEEPING_CLUSTER: {
            "workers": 1,
            "queue_limit": 1,
            "timeout": HOUSEKEEPING_RUN_SECONDS + 60,
            "retry": HOUSEKEEPING_RUN_SECONDS + 90,
            # Every task here runs again on its schedule; never redeliver one.
            "max_attempts": 1,
        },
    }
    return cluster
