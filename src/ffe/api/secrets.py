"""The key that signs dashboard sessions: configured, or (in development only) made once and
kept in the data directory so a restart does not log everybody out."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ffe.config import Settings
from ffe.domain.errors import ConfigError

MIN_SECRET_LENGTH = 32
# Values people leave in example configs; refused in production whatever their length.
_PLACEHOLDERS = {"changeme", "change-me", "change_me", "secret", "default", "ffe", "password"}


def session_secret(settings: Settings) -> str:
    """The signing key for this process, refusing weak ones in production."""
    configured = settings.api.secret_key
    value = "" if configured is None else configured.get_secret_value().strip()
    if settings.api.environment == "production":
        if not value or value.lower() in _PLACEHOLDERS or len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                "api.environment is production but api.secret_key is empty, a placeholder or "
                f"shorter than {MIN_SECRET_LENGTH} characters: set FFE__API__SECRET_KEY to a "
                'random value, e.g. `python -c "import secrets; print(secrets.token_urlsafe(48))"`'
            )
        return value
    if value:
        return value
    return _stored_secret(settings.data.dir / "api-secret")


def _stored_secret(path: Path) -> str:
    if path.is_file():
        stored = path.read_text(encoding="utf-8").strip()
        if len(stored) >= MIN_SECRET_LENGTH:
            return stored
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data directory
    value = secrets.token_urlsafe(48)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value)
    os.replace(temporary, path)  # two workers starting at once agree on one file's content
    return path.read_text(encoding="utf-8").strip()
