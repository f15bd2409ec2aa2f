"""JSON bodies that are not an object: a 400 in each door's dialect, never a 500."""

import io

import pytest
from rest_framework.exceptions import ParseError

from revid.parsers import JSONObjectParser
from tests.removal.helpers import assert_json_error, assert_nothing_charged

SEED = "/paid/image/remove/background"
REMOVEBG = "/v1.0/removebg"

NOT_OBJECTS = [
    (b"null", "got null"),
    (b"3", "got a number"),
    (b"true", "got true"),
    (b"false", "got false"),
    (b'"aGVsbG8="', "got a string"),
    (b'[{"image_url": "https://example.com/a.png"}]', "got an array"),
]
TOO_DEEP = [b"[" * 100_000, b'{"image_url": ' + b"[" * 100_000, b'{"a":' * 100_000]


def parse(body: bytes):
    return JSONObjectParser().parse(io.BytesIO(body), "application/json", {})


@pytest.mark.parametrize(("body", "said"), NOT_OBJECTS)
def test_the_parser_refuses_anything_but_an_object(body, said):
    with pytest.raises(ParseError) as error:
        parse(body)
    assert "The JSON body must be an object" in str(error.value.detail)
    assert said in str(error.value.detail)


@pytest.mark.parametrize("body", TOO_DEEP)
def test_the_parser_refuses_deep_nesting_as_a_parse_error(body):
    with pytest.raises(ParseError) as error:
        parse(body)
    assert "nested too deeply" in str(error.value.detail)


def test_the_parser_reads_an_object_and_still_refuses_malformed_json():
    assert parse(b'{"image_url": "https://example.com/a.png", "size": "auto"}') == {
        "image_url": "https://example.com/a.png",
        "size": "auto",
    }
    with pytest.raises(ParseError) as error:
        parse(b'{"image_url": ')
    assert "JSON parse error" in str(error.value.detail)


@pytest.mark.weights
@pytest.mark.parametrize(("body", "said"), NOT_OBJECTS + [(body, "nested") for body in TOO_DEEP])
def test_the_seed_api_answers_400_in_its_shape(api_client, account, body, said):
    response = api_client.generic("POST", SEED, body, content_type="application/json")
    error = assert_json_error(response, 400, "malformed_request")
    assert said in error["error"]
    assert_nothing_charged(account, balance=1000)


@pytest.mark.weights
@pytest.mark.parametrize(("body", "said"), NOT_OBJECTS + [(body, "nested") for body in TOO_DEEP])
def test_the_removebg_api_answers_400_in_its_shape(api_client, account, body, said):
    response = api_client.generic("POST", REMOVEBG, body, content_type="application/json")
    assert response.status_code == 400, response.content[:400]
    (error,) = response.json()["errors"]
    assert error["code"] == "malformed_request"
    assert said in error["detail"]
    assert error["title"] == "Malformed request"
    assert_nothing_charged(account, balance=1000)
