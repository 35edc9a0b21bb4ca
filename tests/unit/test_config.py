"""Settings are validated once, at start, with messages that name the setting."""

from pathlib import Path

import pytest

from tokenmint.config import ConfigError, Settings


def test_given_the_lambda_environment_when_read_then_typed_settings():
    settings = Settings.from_env({"TOKENMINT_BACKEND": "aws", "TOKENMINT_TABLE": "t", "AWS_REGION": "eu-west-1",
                                  "TOKENMINT_SIGNING_KEY_ID": "arn:k", "TOKENMINT_SIGNING_ALG": "ES256",
                                  "TOKENMINT_ISSUER": "https://auth.example.com/", "TOKENMINT_RESOURCE_CACHE_SECONDS": "5"})
    assert settings.issuer == "https://auth.example.com"
    assert (settings.region, settings.signing_alg, settings.resource_cache_seconds) == ("eu-west-1", "ES256", 5.0)


def test_given_an_empty_environment_when_read_then_the_embedded_defaults():
    settings = Settings.from_env({})
    assert settings.backend == "embedded" and settings.issuer is None and settings.data_dir == Path(".tokenmint")


@pytest.mark.parametrize("env, names", [
    ({"TOKENMINT_BACKEND": "aws"}, "TOKENMINT_TABLE"),
    ({"TOKENMINT_BACKEND": "aws", "TOKENMINT_TABLE": "t"}, "TOKENMINT_SIGNING_KEY_ID"),
    ({"TOKENMINT_BACKEND": "gcp"}, "TOKENMINT_BACKEND"),
    ({"TOKENMINT_SIGNING_ALG": "HS256"}, "TOKENMINT_SIGNING_ALG"),
    ({"TOKENMINT_SIGNING_ALG": "none"}, "TOKENMINT_SIGNING_ALG"),
    ({"TOKENMINT_RESOURCE_CACHE_SECONDS": "soon"}, "TOKENMINT_RESOURCE_CACHE_SECONDS"),
    ({"TOKENMINT_ISSUER": "http://auth.example.com"}, "https"),
    ({"TOKENMINT_ISSUER": "https://auth.example.com/?x=1"}, "query"),
])
def test_given_a_bad_setting_when_read_then_config_error_naming_it(env, names):
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_given_a_loopback_http_issuer_when_read_then_allowed_for_local_use():
    assert Settings.from_env({"TOKENMINT_ISSUER": "http://127.0.0.1:8000"}).issuer == "http://127.0.0.1:8000"


@pytest.mark.parametrize("value", ["0", "0s", "0d"])
def test_given_a_zero_duration_for_an_expiry_then_refused_rather_than_never_expiring(value):
    from tokenmint.admin import AdminError, positive_duration

    with pytest.raises(AdminError, match="longer than zero"):
        positive_duration(value)


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "20"])
def test_given_a_fetch_deadline_that_is_not_well_inside_the_function_timeout_then_config_error(value):
    with pytest.raises(ConfigError, match="TOKENMINT_FETCH_DEADLINE"):
        Settings.from_env({"TOKENMINT_FETCH_DEADLINE": value})


def test_given_a_fetch_deadline_when_read_then_seconds_defaulting_to_five():
    assert Settings.from_env({}).fetch_deadline == 5.0
    assert Settings.from_env({"TOKENMINT_FETCH_DEADLINE": "2.5"}).fetch_deadline == 2.5
