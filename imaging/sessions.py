"""The six models of the API contract and one session per model per process.

No Django: where the weights are and how the engine runs come in an
``EngineConfig`` (``removal.registry`` builds it from the settings).
Weights are never fetched at request time: ``install_models`` puts them in
the models folder ahead of time, and a model whose file is absent is
reported unavailable (503 on use, nothing charged).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imaging import engines
from imaging.edges import warm_up_edges
from imaging.layers import warm_up_hard_edges
from imaging.model import predict_mask
from imaging.png import warm_up_encoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    best_for: str
    speed: str
    quality: str
    md5: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "u2net", "General use (default)", "Fast", "High", "60024c5c889badc19c04ad937298a77b"
        ),
        ModelSpec(
            "u2net_human_seg", "Human portraits", "Fast", "High", "c09ddc2e0104f800e3e1bb4652583d1f"
        ),
        ModelSpec(
            "u2netp", "Fast processing", "Very Fast", "Medium", "8e83ca70e441ab06c318d82300c84806"
        ),
        ModelSpec(
            "u2net_cloth_seg", "Clothing items", "Fast", "High", "2434d1f3cb744e0e49386c906e5a08bb"
        ),
        ModelSpec("silueta", "Portraits", "Fast", "High", "55e59e0d8062d2f5d013f4725ee84782"),
        ModelSpec(
            "isnet-general-use",
            "Highest quality",
            "Slower",
            "Very High",
            "fc16ebd8b0c10d971d3513d564d01e29",
        ),
    )
}


@dataclass(frozen=True)
class EngineConfig:
    """Where the weights are and how a session runs them."""

    models_dir: Path
    engine: str = engines.DEFAULT_ENGINE  # a key of engines.ENGINES
    intra_op_threads: int = 0  # 0: the engine's choice (one per physical core)
    allow_spinning: bool = True


def weights_path(name: str, models_dir: Path) -> Path:
    return Path(models_dir) / f"{name}.onnx"


def is_available(name: str, models_dir: Path) -> bool:
    path = weights_path(name, models_dir)
    return path.is_file() and path.stat().st_size > 0


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


# (engine config, model name) -> session
_sessions: dict[tuple[EngineConfig, str], object] = {}
_lock = threading.Lock()
_pid = os.getpid()


def get_session(name: str, config: EngineConfig):
    """The rembg session for ``name``, created once per process and reused.

    A forked child must not reuse its parent's ONNX Runtime session (its
    thread pool did not survive the fork), hence the pid check.
    """
    global _pid
    with _lock:
        if os.getpid() != _pid:
            _sessions.clear()
            _pid = os.getpid()
        key = (config, name)
        session = _sessions.get(key)
        if session is None:
            session = _new_session(name, config)
            _sessions[key] = session
        return session


def loaded_models() -> list[str]:
    return sorted({name for _, name in _sessions})


_shared_arena_pid: int | None = None


def _share_one_arena(ort) -> None:
    """Registers one CPU memory arena for every session of this process.

    By default each session grows its own arena, by doubling, and keeps it:
    a worker that had run u2net and u2netp held two arenas, each sized for
    its model's largest run, and the doubling left much of each unused
    (measured: 1.85 GB RSS after 0.3 to 12 MP photos on both models). One
    shared arena that grows by what is asked for, with ONNX Runtime's
    pre-planned activation block (``enable_mem_pattern``) off, held the
    same runs in 1.13 GB at the same speed (within the run-to-run noise of
    2-3 %).
    """
    global _shared_arena_pid
    if _shared_arena_pid == os.getpid():
        return
    memory = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    # (max memory, extend strategy 1 = kSameAsRequested, defaults, defaults)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, 1, -1, -1))
    _shared_arena_pid = os.getpid()


def release_free_memory() -> None:
    """Hands memory freed by the last job back to the system (glibc only).

    A 12 MP job frees hundreds of MB of image buffers; glibc keeps much of
    it in its heaps, so a worker's RSS stayed at its largest job's. One
    ``malloc_trim`` after each job costs a few milliseconds, after the
    client has been told.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def _new_session(name: str, config: EngineConfig):
    import onnxruntime as ort
    from rembg import new_session

    if name not in MODELS:
        raise KeyError(name)
    path = weights_path(name, config.models_dir)
    if not is_available(name, config.models_dir):
        raise FileNotFoundError(f"Weights for {name} are not installed at {path}")
    precision = engines.ENGINES[config.engine]
    if precision is not None:
        return _openvino_session(name, precision, config)
    options = ort.SessionOptions()
    # 0 leaves the choice to ONNX Runtime: one thread per physical core,
    # which measured best for one worker (docs/benchmarks.md).
    if config.intra_op_threads:
        options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if config.allow_spinning else "0"
    )
    # Spinning threads speed up the run, but kept spinning after it they took
    # a core from what follows (measured: the 0.3 MP PNG 12 -> 22 ms, the
    # 12 MP cut-out 89 -> 163 ms): they stop when the run returns.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    _share_one_arena(ort)
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.enable_mem_pattern = False
    # rembg reads its weights from U2NET_HOME.
    os.environ["U2NET_HOME"] = str(config.models_dir)
    return new_session(name, sess_opts=options, providers=["CPUExecutionProvider"])


def _openvino_session(name: str, precision: str, config: EngineConfig):
    """rembg's session class for ``name``, running on OpenVINO.

    The class brings the model's constants and ``predict``; only its
    ``inner_session`` differs. It is built without ``__init__``, which
    would load the file into ONNX Runtime as well (memory held for nothing).
    """
    from rembg.sessions import sessions

    session_class = sessions[name]
    session = session_class.__new__(session_class)
    session.model_name = name
    path = weights_path(name, config.models_dir)
    session.inner_session = engines.OpenVinoModel(
        path, precision=precision, threads=config.intra_op_threads
    )
    return session


def warm_models(names: list[str], config: EngineConfig) -> dict[str, float]:
    """Loads each model and runs it once, so a worker's first job is not slow.

    The first run of a session allocates the engine's working memory and
    costs about as much again as the load; both are paid here, before the
    worker takes a job. Unknown or missing models are skipped with a
    warning: a worker must start even when one model is not installed.
    Returns the seconds each model took.
    """
    # The PNG encoder's compiled filter too (numba: seconds on first compile).
    logger.info("PNG encoder warm in %.2fs", warm_up_encoder())
    # And the edge kernels every cut-out runs (numba as well).
    logger.info("Edge kernels warm in %.2fs", warm_up_edges())
    logger.info("Hard edge kernel warm in %.2fs", warm_up_hard_edges())
    timings: dict[str, float] = {}
    for name in names:
        if name not in MODELS or not is_available(name, config.models_dir):
            logger.warning("Not warming model %r: unknown or not installed", name)
            continue
        started = time.monotonic()
        try:
            session = get_session(name, config)
            predict_mask(Image.new("RGB", (64, 64), (128, 128, 128)), session)
        except Exception:
            logger.exception("Warming model %s failed", name)
            continue
        timings[name] = time.monotonic() - started
        logger.info("Model %s warm in %.2fs (pid %s)", name, timings[name], os.getpid())
    return timings
