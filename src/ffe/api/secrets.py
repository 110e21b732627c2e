"""The key that signs dashboard sessions: configured, or (in development only) made once and
kept in the data directory so a restart does not log everybody out."""

from __future__ import annotations

import itertools
import math
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ffe.domain.errors import ConfigError

if TYPE_CHECKING:
    from ffe.bootstrap import ApiOptions

MIN_SECRET_LENGTH = 32
# Values people leave in example configs; refused in production whatever their length.
_PLACEHOLDERS = {"changeme", "change-me", "change_me", "secret", "default", "ffe", "password"}


def session_secret(options: ApiOptions) -> str:
    """The signing key for this process (``api.secret_key``), refusing weak ones in
    production."""
    configured = options.secret_key
    value = "" if configured is None else configured.get_secret_value().strip()
    if options.production:
        if not value or value.lower() in _PLACEHOLDERS or len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                "api.environment is production but api.secret_key is empty, a placeholder or "
                f"shorter than {MIN_SECRET_LENGTH} characters: set FFE__API__SECRET_KEY to a "
                f"random value, e.g. {_MAKE_ONE}"
            )
        weakness = secret_weakness(value)
        if weakness is not None:
            raise ConfigError(
                f"api.secret_key is guessable ({weakness}): set FFE__API__SECRET_KEY to a "
                f"random value, e.g. {_MAKE_ONE}"
            )
        return value
    if value:
        return value
    return _stored_secret(options.data_dir / "api-secret")


_MAKE_ONE = '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
# A random 32-character hex key (128 bits) estimates at 98 bits or more; 'abcd' * 10, at 80.
MIN_SECRET_BITS = 90
_RUN = 6  # characters in a row that step by one ("abcdef", "654321") are not random
_REPEAT = 6  # nor is a stretch of this many characters that comes back later


def secret_weakness(value: str) -> str | None:
    """Why ``value`` is too predictable to sign sessions, or None. A cheap estimate, not a
    proof of randomness: the characters' Shannon entropy times the length, then runs and
    repeats that a generator would almost never produce."""
    counts = Counter(value)
    bits = sum(n * math.log2(len(value) / n) for n in counts.values())
    if bits < MIN_SECRET_BITS:
        return f"about {bits:.0f} bits of entropy; at least {MIN_SECRET_BITS} needed"
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(value)]
    for i in range(len(steps) - _RUN + 2):
        window = steps[i : i + _RUN - 1]
        if len(window) == _RUN - 1 and len(set(window)) == 1 and abs(window[0]) == 1:
            return f"it holds a run of {_RUN} consecutive characters"
    for i in range(len(value) - _REPEAT + 1):
        if value.find(value[i : i + _REPEAT], i + 1) != -1:
            return f"a stretch of {_REPEAT} characters comes back in it"
    return None


def _stored_secret(path: Path) -> str:
    try:
        return _read_or_make(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the session key in {path.parent} ({exc.strerror or exc}): make "
            "data.dir (FFE__DATA__DIR) a folder this user can write, or set "
            "FFE__API__SECRET_KEY"
        ) from None


def _read_or_make(path: Path) -> str:
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
