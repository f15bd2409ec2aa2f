"""Django's middlewares under ASGI (revid/async_middleware.py, installed at
start-up): hooks that do no I/O run on the event loop, the others still on
the request's thread.

Django's ``AsyncClient`` runs the middleware chain as the ASGI server does
(each middleware's async path).
"""

from asgiref.sync import SyncToAsync, async_to_sync
from django.test import AsyncClient

from tests.conftest import CUSTOMER_PASSWORD as PASSWORD


def count_thread_hops(monkeypatch) -> list[str]:
    hops: list[str] = []
    original = SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    return hops


def test_healthz_runs_no_middleware_hook_on_a_thread(monkeypatch, db):
    hops = count_thread_hops(monkeypatch)
    response = async_to_sync(AsyncClient().get)("/healthz")
    assert response.status_code == 200
    # Django's own: the request_started signal (the server's asgi module
    # drops its receivers), CSRF's view check and the response's close.
    # Django's MiddlewareMixin would add two hops per middleware.
    assert not [hop for hop in hops if hop.endswith(("process_request", "process_response"))], hops
    assert len(hops) <= 3, hops


def test_a_customer_logs_in_and_out_through_the_async_middlewares(transactional_db, alice):
    """Sessions saved, the CSRF check enforced, messages stored: the hooks
    that do I/O still do it (on a thread)."""

    async def flow():
        client = AsyncClient(enforce_csrf_checks=True)
        page = await client.get("/accounts/login/")
        assert page.status_code == 200
        token = page.cookies["csrftoken"].value
        credentials = {"username": "alice", "password": PASSWORD}
        refused = await client.post("/accounts/login/", credentials)
        assert refused.status_code == 403  # no CSRF token
        logged_in = await client.post(
            "/accounts/login/", {**credentials, "csrfmiddlewaretoken": token}
        )
        assert logged_in.status_code == 302, logged_in.content[:300]
        assert logged_in["Location"] == "/"
        dashboard = await client.get("/dashboard/")  # the saved session
        assert dashboard.status_code == 200
        assert b"alice" in dashboard.content
        token = dashboard.cookies.get("csrftoken", page.cookies["csrftoken"]).value
        logged_out = await client.post("/accounts/logout/", {"csrfmiddlewaretoken": token})
        assert logged_out.status_code == 302
        assert (await client.get("/dashboard/")).status_code == 302

    async_to_sync(flow)()
