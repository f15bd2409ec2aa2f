"""Alpha matting's kernels, compiled in the background of each worker.

pymatting's numba kernels compile once (about 50 s on 2 cores) and are
cached on disk next to pymatting. `make models` compiles them at install
time, so in production this finds them cached and takes a fraction of a
second. `make run` defers that compile here (``install_models
--defer-matting``), so a new checkout reaches its API key sooner: the worker
compiles them in a thread after its models are warm and takes jobs
meanwhile; a matting job that arrives first waits for the same compile.
"""

import logging
import threading

from django.conf import settings

logger = logging.getLogger(__name__)


def _warm_matting() -> None:
    from imaging import matting

    try:
        seconds = matting.warm_up_matting()
    except Exception:
        logger.exception("Compiling alpha matting's kernels failed")
        return
    logger.info("Alpha matting warm in %.2fs", seconds)


def warm_matting_on_worker_spawn(sender=None, proc_name: str = "", **kwargs) -> None:
    """django-q2's ``post_spawn`` receiver, after the models' warm-up; only
    in workers that warm models (not the webhook cluster's)."""
    if settings.WARM_MODELS:
        threading.Thread(target=_warm_matting, name="warm-matting", daemon=True).start()
