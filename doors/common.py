"""Plumbing every API door shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import iscoroutinefunction
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.views import APIView

from removal import submissions, wait_limits
from removal.submissions import CheckedRequest, RemovalRequest
from revid.serving import release_request_thread, run_sync

T = TypeVar("T")

# Set on an answer that was not held because a wait limit was reached: its
# value names the limit ("key" or "address").
WAIT_REFUSED_HEADER = "X-Wait-Refused"


class IgnoreAcceptHeader(DefaultContentNegotiation):
    """The answer is a file or a JSON error whatever the client accepts.

    Bodies are still parsed by their Content-Type.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AsyncAPIView(APIView):
    """A DRF view whose handlers are coroutines, for the doors that wait.

    The same request, authentication, permissions, throttles, exception
    handler and renderers as any ``APIView`` (and so the same error JSON
    and the same OpenAPI schema), dispatched on the event loop: the checks
    that read the database (``initial``) run on the request's thread in one
    of the ``WEB_THREADS`` slots, the handler awaits what it waits for
    without a thread. A handler runs its own sync steps with
    ``revid.serving.run_sync`` (parsing the body is one: ``request.data``).
    """

    async def dispatch(self, request, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await run_sync(self.initial, request, *args, **kwargs)
            if request.method.lower() in self.http_method_names:
                handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
            else:
                handler = self.http_method_not_allowed
            if iscoroutinefunction(handler):
                response = await handler(request, *args, **kwargs)
            else:
                response = handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response


async def checked_then_submitted(
    check: Callable[[], CheckedRequest], submit: Callable[[RemovalRequest], T]
) -> T:
    """A submission as an async door makes it: the cheap checks and the body
    on the request's thread (``check``), an ``image_url`` or ``bg_image_url``
    downloaded on the event loop with that thread released (a slow remote
    holds none), then the images' decode and the charge on a thread again
    (``submit``)."""
    checked = await run_sync(check)
    source, background = checked.source, checked.background
    if isinstance(source, str) or isinstance(background, str):
        await release_request_thread()
        source, background = await submissions.adownload_images(checked)
    return await run_sync(lambda: submit(submissions.finish_request(checked, source, background)))


def client_address(request) -> str:
    """The client's address as the server saw it (behind a proxy, X-Forwarded-For
    from an address in FORWARDED_ALLOW_IPS: uvicorn sets it)."""
    return getattr(request, "META", {}).get("REMOTE_ADDR", "")


@contextlib.asynccontextmanager
async def wait_slot(*, key: str | None, address: str | None, seconds: float):
    """A place within WAIT_MAX_PER_KEY and WAIT_MAX_PER_ADDRESS for one wait,
    freed when the block ends (however: an answer, an error, a client gone).

    Yields None when the wait may go on, else the ``Refusal``: the door
    then answers at once instead of holding the request.
    """
    slot = await wait_limits.take(key=key, address=address, seconds=seconds)
    if isinstance(slot, wait_limits.Refusal):
        yield slot
        return
    try:
        yield None
    finally:
        await slot.release()
