"""Requests and assertions shared by the tests of the doors and the jobs."""

from unittest import mock

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Account
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from imaging import parsers
from imaging.options import Option, WebField
from removal.models import RemovalJob
from tests.conftest import ACCOUNT_CREDITS
from tests.images import decode, solid_png

SUBMIT = "/paid/image/remove/background"


# An option that is not in the table, for the tests that add one to it.
SHADOW = Option(
    name="shadow",
    parse=parsers.parse_bool,
    default=False,
    kind="flag",
    help="Adds a drop shadow under the subject.",
    web=WebField(widget="checkbox", label="Drop shadow", id="opt-shadow", advanced=True),
)


def accepted_task(client, data: bytes | None = None, filename: str = "a.png", **extra) -> str:
    """Posts an image to the seed API as ``client`` and returns the 202's task
    id; the job stays pending (nothing is queued)."""
    upload = SimpleUploadedFile(filename, solid_png() if data is None else data)
    with mock.patch("removal.services.enqueue_job"):
        response = client.post(
            SUBMIT, {"file": upload, "model": "u2netp"}, format="multipart", **extra
        )
    assert response.status_code == 202, response.content
    return response.json()["task_id"]


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    """The seed dialect's error: this status, JSON, ``success`` false, a sentence and the code."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    if code is not None:
        assert body["code"] == code, body
    return body


def assert_nothing_charged(account: Account, *, balance: int = ACCOUNT_CREDITS) -> None:
    """No job, no charge: the balance is untouched and matches the ledger."""
    assert_balance(account, balance)
    assert not LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.CHARGE).exists()
    assert not RemovalJob.objects.filter(account=account).exists()


def assert_refunded(account: Account, *, balance: int = ACCOUNT_CREDITS) -> None:
    """Charged, then refunded once per charge: the balance is back where it was."""
    assert_balance(account, balance)
    entries = LedgerEntry.objects.filter(account=account)
    charges = entries.filter(kind=LedgerEntry.Kind.CHARGE).count()
    assert charges > 0
    assert entries.filter(kind=LedgerEntry.Kind.REFUND).count() == charges


def assert_balance(account: Account, balance: int) -> None:
    """The account holds ``balance`` credits, and its ledger adds up to it."""
    account.refresh_from_db()
    assert account.credit_balance == balance == ledger_sum(account=account)


def multipart_body(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ123") -> bytes:
    """A hand-built multipart body: (field name, file name or None, content)."""
    out = b""
    for name, filename, content in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def alpha(png: bytes) -> np.ndarray:
    return np.asarray(decode(png).convert("RGBA"))[..., 3].astype(np.int16)


def mask_agreement(ours: bytes, reference: bytes) -> tuple[float, float]:
    """IoU of alpha > 127, and mean |Δalpha| in 0..255, of two cut-outs."""
    got, want = alpha(ours), alpha(reference)
    assert got.shape == want.shape
    union = np.logical_or(got > 127, want > 127).sum()
    iou = float(np.logical_and(got > 127, want > 127).sum() / union)
    return iou, float(np.abs(got - want).mean())


def assert_same_mask(ours: bytes, reference: bytes) -> None:
    """The issue's parity bar: IoU >= 0.99 and mean |Δalpha| <= 1/255."""
    iou, mean_diff = mask_agreement(ours, reference)
    assert iou >= 0.99, f"IoU of alpha>127 is {iou:.4f}"
    assert mean_diff <= 1.0, f"mean |alpha difference| is {mean_diff:.3f}/255"
