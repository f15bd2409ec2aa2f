"""The ASGI application `make run` and `make serve` serve (revid/server.py).

Django's ASGI handler, with what this service needs around it:

- Request bodies are bounded while they arrive. Django's handler reads a
  whole body before the view runs, however large; here a body whose
  Content-Length is over the largest one a door accepts is not read at
  all, and one that grows past it (chunked, or lying about its length) is
  cut there. The request then reaches the view empty and marked, and the
  view answers 413 as ``doors.uploads`` does for the WSGI server (after
  the key check, nothing charged), on a connection closed after the answer.
- A chunked body gets the Content-Length Django's parsers need.
- Sync views run in one of ``WEB_THREADS`` slots (``revid.serving``), and
  a request's database connections close with it. A request that runs no
  sync code (/healthz, a long poll between its reads) hops to a thread
  twice: Django's CSRF view check and the response's close
  (revid/async_middleware.py runs the other middleware hooks on the loop).
- Lifespan: at shutdown the waiting listeners close their connections.
"""

import asyncio
import os

import django
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, reset_queries

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "revid.settings")

# Keys this handler adds to a request's ASGI scope.
_BODY_REFUSED = "revid.body_refused"
_BODY_SIZE = "revid.body_size"


def _body_limit(scope: dict) -> int:
    """The largest body any door accepts, as an outer bound: a multipart
    upload of MAX_UPLOAD_BYTES, an image in base64 (a form or JSON body, or
    a multipart text field) of as many decoded bytes, a batch's body on the
    batch door. The doors' own, finer limits (doors.uploads, revid.parsers)
    still apply to what passes."""
    from django.conf import settings

    from doors.uploads import BATCH_PATH, MULTIPART_OVERHEAD_BYTES
    from revid.parsers import multipart_body_limit, text_body_limit

    content_type = b""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_type = value.lower()
    limit = settings.MAX_UPLOAD_BYTES
    if scope.get("path") == BATCH_PATH:
        limit = max(limit, settings.BATCH_MAX_BYTES)
    if content_type.startswith(b"multipart/"):
        return max(limit + MULTIPART_OVERHEAD_BYTES, multipart_body_limit())
    return max(limit + MULTIPART_OVERHEAD_BYTES, text_body_limit())


def _declared_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _bounded_receive(scope: dict, receive):
    """``receive`` that ends the body at the limit and marks the scope."""
    limit = _body_limit(scope)
    declared = _declared_length(scope)
    state = {"size": 0, "done": False}

    async def bounded():
        if state["done"]:
            if _BODY_REFUSED in scope:
                # The rest of a refused body stays unread: Django's wait for
                # the client's disconnect waits here until the answer is sent
                # (and the connection closed), then is cancelled.
                await asyncio.Future()
            # After a whole body, the next message is the client's disconnect.
            return await receive()
        if declared is not None and declared > limit:
            scope[_BODY_REFUSED] = (declared, False)
            state["done"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        message = await receive()
        if message["type"] != "http.request":
            return message
        body = message.get("body", b"")
        state["size"] += len(body)
        if state["size"] > limit:
            scope[_BODY_REFUSED] = (state["size"], True)  # at least this much
            state["done"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not message.get("more_body", False):
            state["done"] = True
            if declared is None:
                scope[_BODY_SIZE] = state["size"]
        return message

    return bounded


class Handler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http":
            receive = _bounded_receive(scope, receive)
        await super().__call__(scope, receive, send)

    def create_request(self, scope, body_file):
        request, error_response = super().create_request(scope, body_file)
        if request is None:
            return request, error_response
        if _BODY_REFUSED in scope:
            from django.conf import settings

            from doors.uploads import REFUSAL_ATTRIBUTE
            from removal.submissions import too_large_message

            # The view answers 413 (doors.uploads.raise_if_upload_refused);
            # the parsers see an empty body.
            size, at_least = scope[_BODY_REFUSED]
            message = too_large_message(size, settings.MAX_UPLOAD_BYTES, at_least=at_least)
            setattr(request, REFUSAL_ATTRIBUTE, message)
            request.META["CONTENT_LENGTH"] = "0"
        elif _BODY_SIZE in scope:
            request.META["CONTENT_LENGTH"] = str(scope[_BODY_SIZE])
        return request, error_response

    async def run_get_response(self, request):
        response = await super().run_get_response(request)
        if _BODY_REFUSED in request.scope:
            # Part of the body is still unread: this connection cannot carry
            # another request.
            response["Connection"] = "close"
        return response

    def make_view_atomic(self, view):
        from asgiref.sync import iscoroutinefunction, sync_to_async

        from revid.serving import sync_slots

        view = super().make_view_atomic(view)
        if iscoroutinefunction(view):
            return view
        run = sync_to_async(view, thread_sensitive=True)

        async def in_a_slot(request, *args, **kwargs):
            async with sync_slots():
                return await run(request, *args, **kwargs)

        return in_a_slot

    async def _lifespan(self, receive, send) -> None:
        from removal.waiting import stop_listeners_of_this_loop

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await stop_listeners_of_this_loop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _close_connections(**kwargs) -> None:
    """Each request's sync code runs on a thread that ends with the request
    (revid.serving), so a connection kept for DB_CONN_MAX_AGE could never be
    used again: close it with the request, on that thread."""
    from revid.serving import close_db_connections

    close_db_connections()


django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does
request_finished.connect(_close_connections, dispatch_uid="revid.asgi.close_connections")
# At a request's start its thread is new (revid.serving): it has no old
# connection to close and no query log to reset, and these sync receivers
# would cost every request, /healthz included, a hop to a thread.
request_started.disconnect(close_old_connections)
request_started.disconnect(reset_queries)
application = Handler()
