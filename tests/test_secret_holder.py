"""flux_sdk's own SecretStr: the key shows in no text form, a pickle keeps it, and pydantic's
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


def test_a_provider_pickled_or_copied_keeps_its_key_and_still_hides_it() -> None:
    """A provider handed to a worker process (multiprocessing, Ray) is pickled, as it
    was with pydantic's SecretStr: it must arrive with its key, still masked."""
    provider = Dataoorts(KEY)
    for copied in (
        copy.copy(provider),
        copy.deepcopy(provider),
        pickle.loads(pickle.dumps(provider)),  # noqa: S301 (our own bytes)
    ):
        assert copied.api_key.get_secret_value() == KEY
        assert KEY not in repr(copied)
    assert pickle.loads(pickle.dumps(SecretStr(KEY))) == SecretStr(KEY)  # noqa: S301


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
