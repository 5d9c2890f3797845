"""Who the holder is: one interface (:class:`HolderAuthenticator`) in front of whatever proves it.

Until the citizen portal has its own login, a holder is proven by a short-lived signed link
(:class:`SignedHolderLinks`) that a service desk or the portal hands out after checking the
person. The token carries the keyed hash of the holder code, never the code: an SMS or a
browser history that leaks a link leaks no ID number, and a token read off a screen tells
nothing about whose it is. Tokens cannot be revoked one by one, so they live at most a day.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from license_store.holder_codes import HOLDER_CODE_TYPES, check_holder_code
from trust.clock import Clock, system_clock
from trust.errors import AuthError, ConfigurationError, CryptoUnavailableError, MalformedInputError

TOKEN_VERSION = 1
MIN_MINUTES, MAX_MINUTES = 1, 24 * 60
DEFAULT_MINUTES = 30
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 256

LINK_SECRET_CONTEXT = b"holder-links"
"""What the link secret is derived under from the holder key (one key file, two uses apart)."""

_MAC_CONTEXT = b"etrust holder link\x00"
_PAYLOAD = struct.Struct(">B3s32sQ16s")
"""version, holder code type (3 ASCII digits), holder hash (SM3, 32 bytes), expiry (Unix
seconds), nonce (16 random bytes): every token differs, even for one holder and minute."""
_MAC_BYTES = 32
_TOKEN_BYTES = _PAYLOAD.size + _MAC_BYTES
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class HolderAuthError(AuthError):
    """A holder token that is missing, malformed, not ours or expired (one answer for all)."""

    code = "HOLDER_TOKEN_INVALID"
    message_zh = "链接无效或已过期，请重新获取"


@dataclass(frozen=True)
class HolderIdentity:
    holder_hash: str
    """Keyed hash of the holder code (what ``LicenseRow.holder_hash`` holds)."""
    holder_code_type: str
    holder_code: str | None = None
    """Only authenticators that saw the code know it (a portal login); signed links do not."""
    expires_at: datetime | None = None


class HolderAuthenticator(Protocol):
    """Turns what a holder presents into who they are, or raises :class:`HolderAuthError`."""

    def holder_of(self, token: str) -> HolderIdentity: ...


def link_secret(holder_key: bytes) -> bytes:
    """The MAC key of holder links, derived from the holder key (HMAC-SM3 under a fixed
    context), so no second key file is needed and the two uses never share a key."""
    return _sm3_mac(holder_key, LINK_SECRET_CONTEXT)


class SignedHolderLinks:
    """Holder tokens MACed with HMAC-SM3: stateless, so any worker checks any token.

    ``hasher`` is the holder-code hash of the registry (``LicenseService.holder_hash``): the
    token must name the holder exactly as the licenses do.
    """

    def __init__(
        self, secret: bytes, hasher: Callable[[str], str], clock: Clock = system_clock
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"a holder-link secret has at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._hasher = hasher
        self._clock = clock

    def mint(self, holder_code: str, code_type: str, minutes: int = DEFAULT_MINUTES) -> str:
        """A token for the holder of ``holder_code`` valid ``minutes`` (1-1440).

        The code's check digits are verified, but whether it holds any license is not looked
        at: the answer is the same for everyone, so minting reveals nothing.
        """
        if isinstance(minutes, bool) or not MIN_MINUTES <= minutes <= MAX_MINUTES:
            raise MalformedInputError(
                f"a holder link lives {MIN_MINUTES}-{MAX_MINUTES} minutes, not {minutes}"
            )
        code = check_holder_code(holder_code, code_type)
        expiry = int((self._clock() + timedelta(minutes=minutes)).timestamp())
        payload = _PAYLOAD.pack(
            TOKEN_VERSION,
            code_type.encode("ascii"),
            bytes.fromhex(self._hasher(code)),
            expiry,
            secrets.token_bytes(16),
        )
        raw = payload + self._mac(payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def holder_of(self, token: str) -> HolderIdentity:
        raw = _decode(token)
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise HolderAuthError("the holder token was not issued here or was altered")
        version, code_type, holder_hash, expiry, _nonce = _PAYLOAD.unpack(payload)
        if version != TOKEN_VERSION:
            raise HolderAuthError(f"holder token version {version} is not supported")
        try:
            kind = code_type.decode("ascii")
        except UnicodeDecodeError:
            kind = ""
        if kind not in HOLDER_CODE_TYPES:
            raise HolderAuthError("the holder token names no known holder code type")
        expires_at = datetime.fromtimestamp(expiry, UTC)
        if self._clock() >= expires_at:
            raise HolderAuthError("the holder token has expired")
        return HolderIdentity(holder_hash.hex(), kind, None, expires_at)

    def _mac(self, payload: bytes) -> bytes:
        return _sm3_mac(self._secret, _MAC_CONTEXT + payload)


def _decode(token: str) -> bytes:
    """The token's bytes, if it is canonical unpadded base64url of the right length."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise HolderAuthError("no holder token, or one of the wrong length")
    if not _BASE64URL.fullmatch(token):
        raise HolderAuthError("a holder token is base64url text")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise HolderAuthError("the holder token is not base64url") from None
    if len(raw) != _TOKEN_BYTES:
        raise HolderAuthError("the holder token has the wrong length")
    return raw


def _sm3_mac(key: bytes, data: bytes) -> bytes:
    try:
        return hmac.new(key, data, "sm3").digest()
    except ValueError as exc:
        raise CryptoUnavailableError("this OpenSSL has no SM3 for holder links") from exc
