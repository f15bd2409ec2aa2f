"""The image engine's models, configured from the settings.

``imaging.sessions`` knows the models and keeps one session per model per
process; this module tells it where the weights are and how to run them
(``U2NET_HOME``, ``MODEL_ENGINE``, ``ORT_*``), so the rest of the service
asks for a model by name only.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from imaging import sessions
from imaging.sessions import MODELS, ModelSpec, file_md5, loaded_models, release_free_memory

__all__ = [
    "MODELS",
    "ModelSpec",
    "engine_config",
    "file_md5",
    "get_session",
    "is_available",
    "loaded_models",
    "release_free_memory",
    "warm_models",
    "warm_models_on_worker_spawn",
    "weights_path",
]


def engine_config() -> sessions.EngineConfig:
    return sessions.EngineConfig(
        models_dir=Path(settings.U2NET_HOME),
        engine=settings.MODEL_ENGINE,
        intra_op_threads=settings.ORT_INTRA_OP_THREADS,
        allow_spinning=settings.ORT_ALLOW_SPINNING,
    )


def weights_path(name: str) -> Path:
    return sessions.weights_path(name, Path(settings.U2NET_HOME))


def is_available(name: str) -> bool:
    return sessions.is_available(name, Path(settings.U2NET_HOME))


def get_session(name: str):
    """The session for ``name`` on the configured engine, created once per process."""
    return sessions.get_session(name, engine_config())


def warm_models(names: list[str] | None = None) -> dict[str, float]:
    """Loads and runs each model once (``WARM_MODELS`` by default); seconds per model."""
    return sessions.warm_models(settings.WARM_MODELS if names is None else names, engine_config())


def warm_models_on_worker_spawn(sender=None, proc_name: str = "", **kwargs) -> None:
    """django-q2's ``post_spawn`` receiver: runs in each new worker process."""
    warm_models()
    release_free_memory()
