"""Queue depth and the oldest waiting job's age, as JSON, for autoscaling.

An autoscaler (a cron job, a Kubernetes CronJob feeding a custom metric, a
script) runs it and adds worker machines while ``oldest_pending_seconds``
grows; see docs/deploy.md, "Autoscaling".
"""

import json

from django.core.management.base import BaseCommand

from removal import selectors


class Command(BaseCommand):
    help = "Print the queue depth and the oldest pending job's age as JSON."

    def handle(self, *args, **options):
        self.stdout.write(json.dumps(selectors.queue_stats()))
