"""The session-signing key: production refuses empty, placeholder, short and guessable ones
with a message saying how to make a good one."""

from __future__ import annotations

import secrets

import pytest

from ffe.api.secrets import secret_weakness, session_secret
from ffe.bootstrap import api_options
from ffe.config import load_settings
from ffe.domain.errors import ConfigError


def _production(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("FFE__API__ENVIRONMENT", "production")
    monkeypatch.setenv("FFE__API__SECRET_KEY", key)


@pytest.mark.parametrize(
    "key",
    [
        "x" * 40,
        "abcd" * 10,
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "Q8#kd92@Lm1!pz7&Rt5^Wc3*Yb0%Nv" + "654321",
        "S3cr3tKey-S3cr3tKey-S3cr3tKey-S3cr3tKey",
    ],
)
def test_session_secret_when_production_key_guessable_then_refused_saying_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    _production(monkeypatch, key)

    with pytest.raises(ConfigError, match="guessable") as refused:
        session_secret(api_options(load_settings()))

    assert "secrets.token_urlsafe(48)" in str(refused.value)
    said = str(refused.value)
    assert not any(key[i : i + 6] in said for i in range(len(key) - 5))  # no piece of it


@pytest.mark.parametrize(
    "make", [lambda: secrets.token_urlsafe(48), lambda: secrets.token_hex(32)], ids=["url", "hex"]
)
def test_session_secret_when_production_key_random_then_used(
    monkeypatch: pytest.MonkeyPatch, make
) -> None:
    key = make()
    _production(monkeypatch, key)

    assert session_secret(api_options(load_settings())) == key


def test_secret_weakness_when_random_keys_then_almost_never_refused() -> None:
    refused = [k for k in (secrets.token_urlsafe(48) for _ in range(2000)) if secret_weakness(k)]

    assert len(refused) <= 1, refused


def test_session_secret_when_data_dir_cannot_be_written_then_config_error_says_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # A file where the data folder should be: refused for root too, unlike a chmod.
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "afile" / "data"))

    with pytest.raises(ConfigError) as refused:
        session_secret(api_options(load_settings()))

    said = str(refused.value)
    assert f"cannot keep the session key in {tmp_path / 'afile' / 'data'}" in said
    assert "FFE__DATA__DIR" in said
    assert "FFE__API__SECRET_KEY" in said
