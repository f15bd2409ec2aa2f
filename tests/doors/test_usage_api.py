"""GET /api/usage: the key holder's ledger rows, per-day totals and balance."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import create_api_key
from billing.selectors import ledger_sum
from billing.services import grant_credits
from doors.usage_api import API_PAGE_SIZE
from tests.ledger_history import backdate
from tests.removal.helpers import assert_json_error


def client_for(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


@pytest.mark.weights
def test_every_row_adds_up_to_the_balance(api_client, history):
    response = api_client.get("/api/usage")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["account"] == "acme"
    assert body["balance"] == 850 == ledger_sum(account=history.account)
    assert sum(row["amount"] for row in body["rows"]) == body["balance"]
    assert body["opening_balance"] == 0
    assert body["closing_balance"] == body["balance"]
    assert body["rows"][0]["balance_after"] == body["balance"]
    assert body["totals"] == {
        "grant": 1000,
        "charge": -75,
        "refund": 25,
        "adjust": -100,
        "purchase": 0,
    }
    assert body["row_count"] == 6 and (body["page"], body["pages"]) == (1, 1)


@pytest.mark.weights
def test_rows_say_which_job_and_key_they_belong_to(api_client, history):
    rows = api_client.get("/api/usage").json()["rows"]
    refund = next(row for row in rows if row["kind"] == "refund")
    assert refund["job_status"] == "failed"
    assert refund["api_key"] == history.key.prefix
    assert refund["amount"] == 25
    grant = next(row for row in rows if row["kind"] == "grant")
    assert (grant["job_id"], grant["api_key"], grant["note"]) == (None, None, "Initial credits")


@pytest.mark.weights
def test_per_day_totals_cover_every_day_of_the_period(api_client, history):
    today = timezone.localdate()
    start = today - timedelta(days=6)
    body = api_client.get(f"/api/usage?from={start}&to={today}").json()
    assert body["period"] == {"from": str(start), "to": str(today)}
    assert [day["date"] for day in body["days"]] == [
        str(start + timedelta(days=n)) for n in range(7)
    ]
    assert body["days"][-1] == {
        "date": str(today),
        "images_completed": 2,
        "images_failed": 1,
        "credits_spent": 50,
        "credits_added": 900,
    }
    assert all(day["images_completed"] == 0 for day in body["days"][:-1])


@pytest.mark.weights
def test_a_period_in_the_past_has_its_opening_and_closing_balance(api_client, history):
    grant = history.account.ledger_entries.get(kind="grant")
    backdate([grant], days=10)
    day = timezone.localdate() - timedelta(days=10)
    body = api_client.get(f"/api/usage?from={day}&to={day}").json()
    assert [row["kind"] for row in body["rows"]] == ["grant"]
    assert (body["opening_balance"], body["closing_balance"]) == (0, 1000)
    assert body["balance"] == 850
    later = api_client.get(f"/api/usage?from={day + timedelta(days=1)}").json()
    assert later["opening_balance"] == 1000
    assert later["opening_balance"] + sum(row["amount"] for row in later["rows"]) == 850


@pytest.mark.weights
def test_it_filters_by_api_key(api_client, history):
    body = api_client.get(f"/api/usage?api_key={history.other_key.prefix}").json()
    assert [(row["kind"], row["amount"]) for row in body["rows"]] == [("charge", -25)]
    assert body["api_key"] == history.other_key.prefix
    assert body["totals"]["charge"] == -25


@pytest.mark.weights
def test_bad_dates_are_a_400_in_the_error_shape(api_client, history):
    for query, code in [
        ("from=2025-13-01", "invalid_date"),
        ("to=tomorrow", "invalid_date"),
        ("from=2025-02-01&to=2025-01-01", "invalid_date"),
        ("from=2020-01-01&to=2025-01-01", "invalid_date"),
        ("to=0001-01-01", "invalid_date"),
        ("from=0001-01-01&to=0001-01-01", "invalid_date"),
        ("from=9999-12-31&to=9999-12-31", "invalid_date"),
        ("from=9999-12-31", "invalid_date"),
        ("api_key=unknown", "unknown_api_key"),
        ("page=99", "invalid_page"),
        ("page=x", "invalid_page"),
    ]:
        body = assert_json_error(api_client.get(f"/api/usage?{query}"), 400, code)
        assert "Traceback" not in body["error"]


@pytest.mark.weights
def test_it_needs_a_valid_key(anon_client, history):
    assert_json_error(anon_client.get("/api/usage"), 401, "missing_api_key")
    anon_client.credentials(HTTP_X_API_KEY="nope.nope")
    assert_json_error(anon_client.get("/api/usage"), 401, "invalid_api_key")


@pytest.mark.weights
def test_a_key_sees_only_its_own_accounts_rows(history, other_account):
    _, key = create_api_key(account=other_account, name="theirs")
    body = client_for(key).get("/api/usage").json()
    assert body["account"] == "outsider"
    assert body["balance"] == 975
    assert sum(row["amount"] for row in body["rows"]) == 975
    other_keys_rows = client_for(key).get(f"/api/usage?api_key={history.key.prefix}")
    assert_json_error(other_keys_rows, 400, "unknown_api_key")


def test_rows_come_in_pages(api_client, account):
    for number in range(API_PAGE_SIZE):
        grant_credits(account=account, amount=1, note=f"#{number}")
    first = api_client.get("/api/usage").json()
    second = api_client.get("/api/usage?page=2").json()
    assert (first["row_count"], first["pages"], len(first["rows"])) == (501, 2, 500)
    assert [row["note"] for row in second["rows"]] == ["Initial credits"]


def test_the_openapi_schema_documents_it(anon_client):
    schema = anon_client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/usage"]["get"]
    assert operation["operationId"] == "get_usage"
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert parameters["from"]["schema"] == {"type": "string", "format": "date"}
    assert parameters["to"]["schema"] == {"type": "string", "format": "date"}
    assert set(operation["responses"]) == {"200", "400", "401"}
    output = schema["components"]["schemas"]["UsageOutput"]["properties"]
    assert {"rows", "days", "balance", "period"} <= set(output)
