"""account_required: the view runs for a member of an account, and every other
visitor gets the answer of the view's dialect (a page, a script's JSON, a
form's message), written once."""

import json

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages import get_messages
from django.contrib.messages.storage import default_storage
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.urls import reverse

from accounts.guards import NO_ACCOUNT_MESSAGE, SESSION_ENDED_MESSAGE, account_required

PATH = "/probe/?tab=keys"


def guarded(answer: str):
    """A view behind the guard that records whom it served."""
    served = []

    @account_required(answer=answer, title="Probe page")
    def view(request):
        served.append(request.account)
        return HttpResponse("the view's answer")

    return view, served


def visit(rf, view, user):
    request = rf.get(PATH)
    request.user = user
    SessionMiddleware(lambda request: None).process_request(request)
    request._messages = default_storage(request)
    return request, view(request)


@pytest.fixture
def loner(django_user_model):
    """A user who can log in but belongs to no customer account."""
    return django_user_model.objects.create_user("loner", password="pw-loner-123")


@pytest.mark.parametrize("answer", ["page", "json", "message"])
def test_a_member_reaches_the_view_with_their_account(rf, alice, account, answer):
    view, served = guarded(answer)
    request, response = visit(rf, view, alice)
    assert response.content == b"the view's answer"
    assert served == [account]
    assert request.account == account


@pytest.mark.parametrize("answer", ["page", "message"])
def test_signed_out_a_page_or_a_form_sends_to_the_login_page(rf, answer):
    view, served = guarded(answer)
    _, response = visit(rf, view, AnonymousUser())
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/probe/%3Ftab%3Dkeys"
    assert served == []


def test_signed_out_a_script_gets_a_json_401_not_the_login_page(rf):
    view, served = guarded("json")
    _, response = visit(rf, view, AnonymousUser())
    assert response.status_code == 401
    assert json.loads(response.content) == {
        "success": False,
        "error": SESSION_ENDED_MESSAGE,
        "code": "login_required",
    }
    assert served == []


def test_without_an_account_a_page_says_why_with_a_403(rf, loner):
    view, served = guarded("page")
    _, response = visit(rf, view, loner)
    assert response.status_code == 403
    html = response.content.decode()
    assert "<h1>Probe page</h1>" in html
    assert NO_ACCOUNT_MESSAGE in html
    assert served == []


def test_without_an_account_a_script_gets_a_json_403(rf, loner):
    view, served = guarded("json")
    _, response = visit(rf, view, loner)
    assert response.status_code == 403
    assert json.loads(response.content) == {
        "success": False,
        "error": NO_ACCOUNT_MESSAGE,
        "code": "no_account",
    }
    assert served == []


def test_without_an_account_a_form_says_why_on_the_dashboard(rf, loner):
    view, served = guarded("message")
    request, response = visit(rf, view, loner)
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert [str(message) for message in get_messages(request)] == [NO_ACCOUNT_MESSAGE]
    assert served == []


def test_it_refuses_an_answer_it_does_not_know_when_a_view_is_decorated():
    with pytest.raises(ValueError, match="answer must be one of"):
        account_required(answer="xml")
