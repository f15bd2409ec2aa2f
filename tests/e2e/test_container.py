"""The Containerfile's image, built and run with podman: web and worker
containers from the one image complete a job through HTTP.

No image registry is reachable here, so the base image (BASE_IMAGE) is a
Debian bookworm made with debootstrap (python3, its venv module and the CA
certificates: this machine's own bundle, which also holds the certificate of
any TLS proxy between it and PyPI) and loaded with `podman import`. It is
kept in var/container-base/ and in podman's store, so only the first run
pays for it (about 20 s to a minute). podman runs with runc (the default
crun refuses this machine's cgroup v1), chroot isolation for the build,
lower file and process limits than its defaults (which the kernel here
refuses) and the host's network; web and worker share a data folder (their
SQLite database, the queue and the local wake-up sockets) and a media folder,
as compose.yaml's services share a volume.

`make test` installs podman, debootstrap and runc (`make container-tools`);
without them this test skips and says so.
"""

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.conftest import ROOT, free_port, wait_for
from tests.images import photo_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.model]

TOOLS = ("podman", "debootstrap", "runc")
BASE_IMAGE = "localhost/revid-test-base:bookworm"
IMAGE = "localhost/revid:test"
BASE_CACHE = ROOT / "var" / "container-base" / "bookworm-python3.tar"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# podman's defaults that work on this kind of machine (see the docstring).
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "host"]
# Generous bounds for slow steps on a busy 2-core machine: downloads
# (Debian packages, the runtime lock from PyPI, the weights) and compiles.
BASE_TIMEOUT = 600
BUILD_TIMEOUT = 1500
START_TIMEOUT = 240


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def container_tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: `make container-tools` installs them "
            "(apt-get, as root); `make test` does it first"
        )
    if os.geteuid() != 0:
        pytest.skip("debootstrap and rootful podman need root")


def make_base_tarball() -> None:
    """A minimal Debian bookworm with python3 and venv, as a tarball."""
    with tempfile.TemporaryDirectory(prefix="revid-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates"]
            + ["bookworm", str(rootfs), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
            timeout=BASE_TIMEOUT,
        )
        assert result.returncode == 0, (
            f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr}"
        )
        # This machine's certificates: the ones a TLS proxy to PyPI needs too.
        if HOST_CA_BUNDLE.is_file():
            shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        for package in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            package.unlink()
        BASE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        partial = BASE_CACHE.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=300
        )
        partial.replace(BASE_CACHE)


@pytest.fixture(scope="module")
def base_image(container_tools) -> str:
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        if not BASE_CACHE.is_file():
            make_base_tarball()
        podman("import", str(BASE_CACHE), BASE_IMAGE, timeout=300)
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image(base_image) -> str:
    """The Containerfile built on the debootstrap base (cached layers reused)."""
    podman(
        "build",
        "--isolation",
        "chroot",
        "--format",
        "docker",  # OCI images drop HEALTHCHECK
        *LIMITS,
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "--tag",
        IMAGE,
        "--file",
        "Containerfile",
        ".",
        timeout=BUILD_TIMEOUT,
    )
    # Earlier builds' images, now untagged: best effort (deleting a gigabyte
    # of layers can take minutes on a busy disk; podman finishes it later).
    with contextlib.suppress(subprocess.TimeoutExpired):
        podman("image", "prune", "--force", timeout=600, check=False)
    return IMAGE


class Containers:
    """Containers of the image sharing one data and one media folder."""

    def __init__(self, image: str, folder: Path):
        self.image = image
        self.data = folder / "data"
        self.media = folder / "media"
        for path in (self.data, self.media):
            path.mkdir()
            path.chmod(0o777)  # the image's user, uid 10001, writes there
        self.port = free_port()
        self.env = {
            "SECRET_KEY": "container-test-secret-key-0123456789abcdefghijklmnopqrstuv",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "1",
            "Q_WORKERS": "1",
            "WARM_MODELS": "u2netp",
            "ALLOWED_HOSTS": "127.0.0.1",
        }
        self.names: list[str] = []

    def _options(self) -> list[str]:
        options = [*LIMITS, "--volume", f"{self.data}:/var/lib/revid"]
        options += ["--volume", f"{self.media}:/srv/media"]
        for key, value in self.env.items():
            options += ["--env", f"{key}={value}"]
        return options

    def run(self, *command: str, timeout: float = 300) -> str:
        """Runs ``command`` in a new container to its end; returns its output."""
        result = podman("run", "--rm", *self._options(), self.image, *command, timeout=timeout)
        return result.stdout

    def start(self, role: str) -> str:
        name = f"revid-test-{role}-{os.getpid()}-{self.port}"
        podman("run", "--detach", "--name", name, *self._options(), self.image, role)
        self.names.append(name)
        return name

    def logs(self, name: str) -> str:
        result = podman("logs", name, check=False)
        return result.stdout + result.stderr

    def remove_all(self) -> None:
        for name in self.names:
            podman("stop", "--time", "10", name, timeout=60, check=False)
            podman("rm", "--force", name, timeout=60, check=False)


@pytest.fixture
def containers(image, tmp_path):
    running = Containers(image, tmp_path)
    yield running
    running.remove_all()


@pytest.mark.timeout(BUILD_TIMEOUT + BASE_TIMEOUT + 600)
def test_the_image_runs_web_and_worker_as_a_user_and_completes_a_job(containers):
    inspect = json.loads(podman("image", "inspect", containers.image).stdout)[0]
    config = inspect["Config"]
    assert config["User"] == "revid"
    assert config["Cmd"] == ["web"]
    assert "healthcheck.py" in " ".join(inspect["Healthcheck"]["Test"])
    # The weights are inside, and only the runtime lock's packages.
    listing = containers.run("sh", "-c", "id -u; ls /opt/models; /opt/venv/bin/pip list")
    assert listing.splitlines()[0] == "10001"
    assert "u2net.onnx" in listing and "u2netp.onnx" in listing
    assert "pytest" not in listing.lower() and "playwright" not in listing.lower()
    # OpenVINO, the default engine, without what a CPU-only ONNX service never loads.
    openvino_libs = containers.run(
        "sh", "-c", "ls /opt/venv/lib/python3*/site-packages/openvino/libs"
    ).split()
    assert "libopenvino_intel_cpu_plugin.so" in openvino_libs
    assert any(name.startswith("libopenvino_onnx_frontend") for name in openvino_libs)
    assert "libopenvino_intel_gpu_plugin.so" not in openvino_libs
    assert not any("tensorflow" in name or "pytorch" in name for name in openvino_libs)

    containers.run("migrate")
    created = containers.run(
        "python", "manage.py", "create_account", "container", "--credits", "100"
    )
    key = created.strip().splitlines()[-1]

    web = containers.start("web")
    worker = containers.start("worker")
    url = f"http://127.0.0.1:{containers.port}"

    def serving() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(serving, timeout=START_TIMEOUT, message=f"web never answered:\n{containers.logs(web)}")
    wait_for(
        lambda: "warm in" in containers.logs(worker),
        timeout=START_TIMEOUT,
        message=f"the worker never warmed up:\n{containers.logs(worker)}",
    )
    for name in (web, worker):
        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, f"{name} unhealthy: {health.stdout}{health.stderr}"

    submitted = requests.post(
        f"{url}/paid/image/remove/background",
        headers={"x-api-key": key},
        files={"file": ("astronaut.jpg", photo_bytes("astronaut"), "image/jpeg")},
        data={"model": "u2netp"},
        timeout=30,
    )
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["task_id"]
    # The job is the worker's to finish: ask with ?wait= until it ends.
    deadline = time.monotonic() + START_TIMEOUT
    status = {}
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/api/get/{task_id}?wait=30", timeout=40).json()
        if status["status"] in ("completed", "failed"):
            break
    assert status["status"] == "completed", f"{status}\n{containers.logs(worker)}"
    image_url = status["result"]["image_url"]
    assert image_url.startswith(f"{url}/output/")
    download = requests.get(image_url, timeout=30)
    assert download.status_code == 200
    with Image.open(io.BytesIO(download.content)) as cutout:
        assert cutout.mode == "RGBA" and cutout.size == (512, 512)
        alpha = cutout.getchannel("A")
        assert alpha.getextrema() == (0, 255)  # a subject kept, a background removed

    # Alpha matting's kernels were compiled into the image: the worker's
    # background warm-up found them cached (a cold compile takes ~50 s here).
    logs = containers.logs(worker)
    matting = [line for line in logs.splitlines() if "Alpha matting warm in" in line]
    if not matting:
        wait_for(lambda: "Alpha matting warm in" in containers.logs(worker), timeout=120)
        logs = containers.logs(worker)
        matting = [line for line in logs.splitlines() if "Alpha matting warm in" in line]
    seconds = float(matting[0].split("warm in ")[1].rstrip("s"))
    assert seconds < 20, f"alpha matting was compiled at start, not in the image: {matting[0]}"
