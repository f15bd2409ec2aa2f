"""Django's own middlewares, without a thread hop per hook under ASGI.

Under the ASGI server (revid/asgi.py) Django runs each ``process_request``
and ``process_response`` of a ``MiddlewareMixin`` middleware on the
request's thread (``sync_to_async``): /healthz took 15 hops to a thread,
each a wait for the GIL behind whatever sync work runs, which is what made
its p99 grow with the load. ``install()`` gives Django's middlewares in
MIDDLEWARE an async path that runs the hooks on the event loop when they do
no I/O (headers, redirects, lazy objects), and hops to the request's thread
only when they might touch the database (a session that was read or
changed, messages that were added or read, CSRF_USE_SESSIONS). The classes
stay Django's own, by name, so ``check --deploy`` still finds them; their
sync path (WSGI, the test client) is untouched. CSRF's ``process_view``,
which may read a form body, keeps Django's hop.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware


def _never(*args) -> bool:
    return False


def _session_used(request, response) -> bool:
    session = getattr(request, "session", None)
    return session is not None and (session.accessed or settings.SESSION_SAVE_EVERY_REQUEST)


def _messages_used(request, response) -> bool:
    storage = getattr(request, "_messages", None)
    return storage is not None and (storage.used or storage.added_new)


def _csrf_in_session(*args) -> bool:
    return settings.CSRF_USE_SESSIONS


# Each middleware: when its process_request, and its process_response, may do I/O.
ON_THE_LOOP: dict[type, tuple[Callable[..., bool], Callable[..., bool]]] = {
    SecurityMiddleware: (_never, _never),
    CommonMiddleware: (_never, _never),  # APPEND_SLASH resolves a URL: no I/O
    XFrameOptionsMiddleware: (_never, _never),
    AuthenticationMiddleware: (_never, _never),  # request.user is lazy
    SessionMiddleware: (_never, _session_used),  # the store is lazy; saving is I/O
    MessageMiddleware: (_never, _messages_used),
    CsrfViewMiddleware: (_csrf_in_session, _csrf_in_session),
}


def _acall_for(request_needs_thread, response_needs_thread):
    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            if request_needs_thread(request):
                hook = sync_to_async(self.process_request, thread_sensitive=True)
                response = await hook(request)
            else:
                response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if response_needs_thread(request, response):
                hook = sync_to_async(self.process_response, thread_sensitive=True)
                response = await hook(request, response)
            else:
                response = self.process_response(request, response)
        return response

    return __acall__


def install() -> None:
    """Gives each middleware of ON_THE_LOOP its async path (idempotent)."""
    for cls, (request_needs_thread, response_needs_thread) in ON_THE_LOOP.items():
        cls.__acall__ = _acall_for(request_needs_thread, response_needs_thread)
