"""The account guard: a view runs only for a signed-in user with a customer account.

Every page, form and script endpoint of the web side needs the logged-in
user's ``Account``. ``account_required`` finds it (``request.account``)
or answers in the dialect of the view it guards, so the "no account"
answer is written once:

- ``answer="page"``: signed out, the login page; no account, a 403 page
  that says why (``accounts/no_account.html``);
- ``answer="json"``: a script's JSON error (401 ``login_required``, 403
  ``no_account``), never the login page's HTML;
- ``answer="message"``: a form's flash message and a redirect to the
  dashboard (post/redirect/get).

The API's doors authenticate with an API key instead (``authentication``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.selectors import account_for_user
from revid.errors import error_response

NO_ACCOUNT_MESSAGE = (
    "Your login is not linked to a customer account yet; ask an administrator to add you to one."
)
SESSION_ENDED_MESSAGE = "Your session has ended; log in again."
ANSWERS = ("page", "json", "message")


def account_required(*, answer: str = "page", title: str = "") -> Callable:
    """Decorator: sets ``request.account`` or answers as ``answer`` says.

    ``title`` heads the "no account" page (the page the user asked for).
    """
    if answer not in ANSWERS:
        raise ValueError(f"answer must be one of {ANSWERS}, not {answer!r}")

    def refusal(request: HttpRequest) -> HttpResponse | None:
        """The answer for a request without a customer account; None sets ``request.account``."""
        if not request.user.is_authenticated:
            if answer == "json":
                return error_response(SESSION_ENDED_MESSAGE, "login_required", 401)
            return redirect_to_login(request.get_full_path())
        account = account_for_user(user=request.user)
        if account is None:
            if answer == "json":
                return error_response(NO_ACCOUNT_MESSAGE, "no_account", 403)
            if answer == "message":
                messages.error(request, NO_ACCOUNT_MESSAGE)
                return redirect("dashboard")
            context = {"title": title, "message": NO_ACCOUNT_MESSAGE}
            return render(request, "accounts/no_account.html", context, status=403)
        request.account = account
        return None

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        if iscoroutinefunction(view):
            # An async view (one that waits): the session and account are
            # read on the request's thread, the view runs on the loop.
            @wraps(view)
            async def guarded_async(request: HttpRequest, *args, **kwargs) -> HttpResponse:
                response = await sync_to_async(refusal)(request)
                if response is not None:
                    return response
                return await view(request, *args, **kwargs)

            return guarded_async

        @wraps(view)
        def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = refusal(request)
            if response is not None:
                return response
            return view(request, *args, **kwargs)

        return guarded

    return decorate
