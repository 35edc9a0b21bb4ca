"""RFC 6749 §3.1 form parsing: strict where the spec is strict, lenient where it says to ignore."""

import pytest

from tokenmint.oauth.errors import InvalidRequestError, PayloadTooLargeError
from tokenmint.oauth.form import MAX_FORM_FIELDS, parse_form

FORM = "application/x-www-form-urlencoded"


def test_given_a_form_when_parsed_then_values_are_percent_decoded():
    form = parse_form(b"grant_type=client_credentials&scope=a+b%3Ac", FORM)
    assert form.get("grant_type") == "client_credentials"
    assert form.get("scope") == "a b:c"


def test_given_a_charset_parameter_when_utf8_then_accepted_otherwise_refused():
    assert parse_form(b"a=1", FORM + "; charset=UTF-8").get("a") == "1"
    with pytest.raises(InvalidRequestError, match="UTF-8"):
        parse_form(b"a=1", FORM + "; charset=iso-8859-1")


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain", "multipart/form-data"])
def test_given_another_content_type_when_parsed_then_invalid_request(content_type):
    with pytest.raises(InvalidRequestError, match="Content-Type"):
        parse_form(b"a=1", content_type)


def test_given_a_repeated_parameter_when_read_then_invalid_request_naming_it():
    form = parse_form(b"scope=a&scope=b", FORM)
    with pytest.raises(InvalidRequestError, match="scope must not be repeated"):
        form.get("scope")


def test_given_empty_values_when_read_then_treated_as_omitted():
    form = parse_form(b"scope=&scope=a&resource=", FORM)
    assert form.get("scope") == "a"
    assert form.get("resource") is None


def test_given_unknown_parameters_even_repeated_when_parsed_then_ignored():
    form = parse_form(b"foo=1&foo=2&grant_type=x", FORM)
    assert form.get("grant_type") == "x"


@pytest.mark.parametrize("body", [b"a=%ff%fe", b"a=\xff"])
def test_given_bad_utf8_when_parsed_then_invalid_request(body):
    with pytest.raises(InvalidRequestError, match="UTF-8"):
        parse_form(body, FORM)


def test_given_a_body_over_the_limit_when_parsed_then_413():
    with pytest.raises(PayloadTooLargeError) as info:
        parse_form(b"a=" + b"x" * 20_000, FORM)
    assert info.value.status_code == 413


def test_given_too_many_fields_when_parsed_then_invalid_request():
    body = "&".join(f"f{i}=1" for i in range(MAX_FORM_FIELDS + 1)).encode()
    with pytest.raises(InvalidRequestError, match="fields"):
        parse_form(body, FORM)
