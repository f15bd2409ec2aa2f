from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from removal.signals import batch_ended, job_ended
        from webhooks import receivers

        # The jobs layer announces a job's (or a batch's) end; webhooks queue its event.
        job_ended.connect(receivers.queue_job_event, dispatch_uid="webhooks.queue_job_event")
        batch_ended.connect(receivers.queue_batch_event, dispatch_uid="webhooks.queue_batch_event")
