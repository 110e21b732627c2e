"""Loading the settings, with failures that name the key and hide secrets, and showing them
with every secret masked (``ffe config show``)."""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from ffe.config.settings import Settings
from ffe.config.trading import NotifySettings
from ffe.domain.errors import ConfigError

ENV_PREFIX = "FFE__"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation failures into a ConfigError that names the key."""
    _check_environment()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration from the environment: {exc}") from None


def _check_environment() -> None:
    """Refuse ``FFE__`` variables that name no setting: pydantic-settings would ignore them."""
    sections = Settings.model_fields
    for name in os.environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        field = sections.get(section)
        if field is None:
            raise ConfigError(
                f"{section}: unknown section (from environment variable {name}); "
                f"sections are {', '.join(sections)}"
            )
        known = _keys(field.annotation)
        if key and key.split("__")[0] not in known:
            raise ConfigError(
                f"{section}.{key}: unknown key (from environment variable {name}); "
                f"keys of {section} are {', '.join(sorted(known))}"
            )


def _keys(model: Any) -> set[str]:
    fields = getattr(model, "model_fields", {})
    return set(fields) | {f.alias for f in fields.values() if f.alias}


_SENSITIVE = re.compile(r"key|secret|password|token|url|database", re.IGNORECASE)


def _explain(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see `ffe config show`)")
        elif _SENSITIVE.search(key):
            lines.append(f"  {key}: {error['msg']} (value hidden: it may hold a secret)")
        else:
            lines.append(f"  {key}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, with every secret replaced by ``'***'``."""
    dumped: dict[str, Any] = settings.model_dump(mode="json", by_alias=True)
    dumped["database"]["url"] = _mask_url(settings.database_url())
    if settings.data.alpha_vantage_key is not None:
        dumped["data"]["alpha_vantage_key"] = "***"
    if settings.data.oanda_token is not None:
        dumped["data"]["oanda_token"] = "***"
    if settings.llm.api_key is not None:
        dumped["llm"]["api_key"] = "***"
    if settings.llm.base_url is not None:
        dumped["llm"]["base_url"] = _mask_url(settings.llm.base_url)
    _mask_notify(settings.notify, dumped["notify"])
    if settings.api.secret_key is not None:
        dumped["api"]["secret_key"] = "***"
    if settings.redis.url is not None:
        dumped["redis"]["url"] = _mask_url(settings.redis.url.get_secret_value())
    if settings.database.listen_url is not None:
        dumped["database"]["listen_url"] = _mask_url(
            settings.database.listen_url.get_secret_value()
        )
    if settings.tune.storage_url is not None:
        dumped["tune"]["storage_url"] = _mask_url(settings.tune.storage_url.get_secret_value())
    return dumped


def _mask_notify(notify: NotifySettings, shown: dict[str, Any]) -> None:
    for key in ("telegram_token", "webhook_secret"):
        if getattr(notify, key) is not None:
            shown[key] = "***"
    shown["telegram_base_url"] = _mask_url(notify.telegram_base_url)
    shown["webhook_urls"] = [_mask_webhook(url) for url in notify.webhook_urls]


def _mask_webhook(url: str) -> str:
    """Keep a webhook URL's scheme and host only: services such as Slack and Discord put the
    secret in its path."""
    scheme, sep, rest = _mask_url(url).partition("://")
    host, *tail = re.split(r"(?=[/?#])", rest, maxsplit=1)
    return f"{scheme}{sep}{host}/***" if tail and tail[0].strip("/") else f"{scheme}{sep}{rest}"


_QUERY_SECRET = re.compile(r"((?:password|passwd|pwd|secret|token)=)[^&;]*", re.IGNORECASE)


def _mask_url(url: str) -> str:
    """Hide the password of a database URL (in the authority or the query), keep the rest."""
    url = _QUERY_SECRET.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"
