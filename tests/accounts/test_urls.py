"""Logging in and out: the pages accounts/urls.py configures."""

from tests.conftest import CUSTOMER_PASSWORD as PASSWORD


def test_it_logs_a_customer_in_and_sends_them_to_the_upload_page(client, alice):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'for="id_username"' in page.content.decode()
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_it_refuses_a_wrong_password_with_a_sentence(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "did not match" in response.content.decode()


def test_it_logs_out_with_a_post(customer_client):
    response = customer_client.post("/accounts/logout/")
    assert response.status_code == 302
    assert customer_client.get("/dashboard/").status_code == 302
