from django.apps import AppConfig


class RemovalConfig(AppConfig):
    name = "removal"
    verbose_name = "Background removal"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from removal import registry, warmup
        from revid import async_middleware, checks, queue_signing  # noqa: F401 (checks registers itself)

        # Tasks signed with a key listed in SECRET_KEY_FALLBACKS still run.
        queue_signing.install()
        # Under ASGI, Django's middleware hooks that do no I/O run on the loop.
        async_middleware.install()

        # Each django-q2 worker process loads WARM_MODELS as it starts
        # rather than on its first job (docs/benchmarks.md).
        post_spawn.connect(registry.warm_models_on_worker_spawn, dispatch_uid="removal.warm_models")
        # Then, in a thread, alpha matting's kernels (cached on disk after
        # the first compile; `make run` leaves that compile to the worker).
        post_spawn.connect(warmup.warm_matting_on_worker_spawn, dispatch_uid="removal.warm_matting")

        from removal import batches, signals

        # A batch item's end queues the batch's next item and may end the batch.
        signals.job_ended.connect(batches.on_job_ended, dispatch_uid="removal.batch_items")
