"""What the jobs layer tells the layers above it, without importing them.

``job_ended`` is sent once a job's end (completed or failed) has been
committed; ``webhooks`` listens to queue the job's event. A receiver must
not raise: the job's state and charge never depend on it (the sender logs
and carries on).
"""

from django.dispatch import Signal

# Sent with ``job`` (a RemovalJob), after the commit that ended it.
job_ended = Signal()

# Sent with ``batch`` (a Batch) once, when its last item has ended.
batch_ended = Signal()
