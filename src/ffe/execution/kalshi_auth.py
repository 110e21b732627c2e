"""Kalshi's request signatures: RSA-PSS over ``timestamp + METHOD + path``.

Every authenticated request carries three headers: ``KALSHI-ACCESS-KEY`` (the API key id),
``KALSHI-ACCESS-TIMESTAMP`` (milliseconds since the epoch) and ``KALSHI-ACCESS-SIGNATURE``
(base64 of an RSA-PSS signature, SHA-256 with MGF1-SHA-256 and a salt as long as the digest,
over the timestamp, the upper-case method and the URL path without its query string).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ffe.domain.errors import ConfigError

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"


def pss() -> padding.PSS:
    """The padding Kalshi verifies: MGF1-SHA-256, salt length equal to the digest's."""
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def signed_message(timestamp_ms: str, method: str, path: str) -> bytes:
    """What is signed: the timestamp, the method and the path, with any query cut off."""
    return f"{timestamp_ms}{method.upper()}{path.split('?', 1)[0]}".encode()


def load_private_key(pem: bytes, *, source: str = "the Kalshi private key") -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#1 or PKCS#8, unencrypted), or a ConfigError that says
    what is wrong with ``source``."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"{source} is not an unencrypted PEM private key ({exc}): use the .key file Kalshi "
            "gave when the API key was created"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{source} is not an RSA key: Kalshi signs requests with RSA-PSS")
    return key


def read_private_key(path: Path) -> bytes:
    """The PEM bytes of the key file at ``path``; ConfigError if it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the Kalshi private key file {path} ({exc.strerror or exc}): set "
            "kalshi.private_key_path to the .key file of the API key"
        ) from exc


class KalshiSigner:
    """Signs requests for one API key. ``clock`` gives seconds since the epoch (tests move it)."""

    def __init__(
        self, key_id: str, private_key_pem: bytes, clock: Callable[[], float] = time.time
    ) -> None:
        if not key_id.strip():
            raise ConfigError("the Kalshi API key id is empty: set kalshi.key_id")
        self.key_id = key_id
        self._key = load_private_key(private_key_pem)
        self._clock = clock

    def headers(self, method: str, path: str) -> dict[str, str]:
        """The three authentication headers for a request to ``path`` (the full URL path,
        including the ``/trade-api/v2`` prefix)."""
        timestamp = str(int(self._clock() * 1000))
        signature = self._key.sign(signed_message(timestamp, method, path), pss(), hashes.SHA256())
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        }
