"""flux_sdk's own SecretStr: the key shows nowhere, pickles nowhere, and pydantic's
SecretStr (or any holder with ``get_secret_value``) is still taken as a key."""

from __future__ import annotations

import copy
import logging
import pickle

import pydantic
import pytest

from flux_sdk import ConfigError, Dataoorts, GenerateRequest
from flux_sdk.providers import SecretStr, redact

KEY = "sk-holder-test-5f1c9e22a7b3"


def test_the_key_shows_in_no_text_form(caplog: pytest.LogCaptureFixture) -> None:
    secret = SecretStr(KEY)
    texts = [repr(secret), str(secret), f"{secret}", f"{secret!r:>40}", format(secret, ">30")]
    texts += ["%s %r" % (secret, secret), repr([secret]), repr({"key": secret})]  # noqa: UP031
    with caplog.at_level(logging.DEBUG, logger="flux_sdk.test"):
        logging.getLogger("flux_sdk.test").debug("key %s %r", secret, secret)
    texts += [record.getMessage() for record in caplog.records]
    assert not [text for text in texts if KEY[:8] in text or KEY[-8:] in text]
    assert repr(secret) == "SecretStr('**********')"
    assert str(SecretStr("")) == ""
    assert secret.get_secret_value() == KEY
    assert len(secret) == len(KEY)


def test_a_key_is_never_pickled_but_copies_keep_it() -> None:
    """Pickling a key (or a provider that holds one) is refused, without quoting it;
    copying a provider keeps its key."""
    provider = Dataoorts(KEY)
    for obj in (SecretStr(KEY), provider):
        with pytest.raises(TypeError, match="factory") as caught:
            pickle.dumps(obj)
        assert KEY not in str(caught.value)
    for copied in (copy.copy(provider), copy.deepcopy(provider)):
        assert copied.api_key.get_secret_value() == KEY


def test_a_key_is_immutable_and_equal_by_value() -> None:
    secret = SecretStr(KEY)
    with pytest.raises(AttributeError):
        secret._secret_value = "other"
    assert secret == SecretStr(KEY)
    assert secret != SecretStr(KEY + "x")
    assert hash(secret) == hash(SecretStr(KEY))
    with pytest.raises(TypeError, match="bytes"):
        SecretStr(KEY.encode())  # type: ignore[arg-type]


def test_pydantic_secretstr_is_still_a_key() -> None:
    """A key given as pydantic's SecretStr is sent, held as flux_sdk's, and redacted."""
    provider = Dataoorts(pydantic.SecretStr(KEY))
    sent = provider.build_request(GenerateRequest(prompt="a cat"))
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert provider.api_key == SecretStr(KEY)
    assert redact(f"echo {KEY}", [pydantic.SecretStr(KEY)]) == "echo **********"


def test_a_key_of_another_type_is_a_config_error_that_does_not_quote_it() -> None:
    with pytest.raises(ConfigError, match="bytes") as caught:
        Dataoorts(KEY.encode())  # type: ignore[arg-type]
    assert KEY not in str(caught.value)
