"""Who the holder is: one interface (:class:`HolderAuthenticator`) in front of whatever proves it.

Until the citizen portal has its own login, a holder is proven by a short-lived signed link
(:class:`SignedHolderLinks`) that a service desk or the portal hands out after checking the
person. The token carries the keyed hash of the holder code only encrypted (AES-256-GCM under a
key derived from the link secret), never the code and never the hash in clear: the hash is what
indexes the registry, so a leaked link (an SMS, a browser history, a screenshot) tells nobody
outside the server whose it is, nor ties two links of one person together. Tokens cannot be
revoked one by one, so they live at most a day.

A token has a scope. ``read`` lets the holder list their licenses, download their documents and
see their grants and receipts; ``consent`` also lets them create and withdraw grants. A service
desk mints ``read`` links only: a desk that has looked a person up must not be able to consent
in their name. ``consent`` links come, for now, from the operator's command line
(``etrust holder link --scope consent``); the portal's login will mint them once it exists.
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

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from license_store.holder_codes import HOLDER_CODE_TYPES, check_holder_code
from trust.clock import Clock, system_clock
from trust.errors import (
    AuthError,
    ConfigurationError,
    CryptoUnavailableError,
    ForbiddenError,
    MalformedInputError,
)

TOKEN_VERSION = 2
"""2: scoped, holder encrypted (version 1 carried the holder hash in clear; refused now)."""
MIN_MINUTES, MAX_MINUTES = 1, 24 * 60
DEFAULT_MINUTES = 30
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 256

READ, CONSENT = "read", "consent"
SCOPES = (READ, CONSENT)
"""In the token as their index + 1 (0 is no scope)."""

LINK_SECRET_CONTEXT = b"holder-links"
"""What the link secret is derived under from the holder key (one key file, two uses apart)."""

_MAC_CONTEXT = b"etrust holder link\x00"
_ENCRYPTION_CONTEXT = b"etrust holder link key\x00"
"""The encryption key is HMAC-SM3(secret, this): no MAC input starts with it (the MAC's all
start with ``_MAC_CONTEXT``), so the key is never a MAC a token could show."""
_HEADER = struct.Struct(">BBQ12s")
"""version, scope, expiry (Unix seconds), nonce (12 random bytes: the AES-GCM nonce, and every
token differs, even for one holder and minute)."""
_SECRET = struct.Struct(">3s32s")
"""What is encrypted: holder code type (3 ASCII digits), holder hash (SM3, 32 bytes)."""
_TAG_BYTES = 16
_MAC_BYTES = 32
_SEALED_BYTES = _SECRET.size + _TAG_BYTES
_TOKEN_BYTES = _HEADER.size + _SEALED_BYTES + _MAC_BYTES
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class HolderAuthError(AuthError):
    """A holder token that is missing, malformed, not ours or expired (one answer for all)."""

    code = "HOLDER_TOKEN_INVALID"
    message_zh = "链接无效或已过期，请重新获取"


class HolderScopeError(ForbiddenError):
    """A good holder token whose scope does not cover what was asked (a desk's read link
    creating or withdrawing a grant)."""

    code = "HOLDER_SCOPE"
    message_zh = "此链接无权进行授权操作"


@dataclass(frozen=True)
class HolderIdentity:
    holder_hash: str
    """Keyed hash of the holder code (what ``LicenseRow.holder_hash`` holds)."""
    holder_code_type: str
    holder_code: str | None = None
    """Only authenticators that saw the code know it (a portal login); signed links do not."""
    expires_at: datetime | None = None
    scope: str = READ
    """``read`` or ``consent`` (see the module); least power unless an authenticator says."""

    def require(self, scope: str) -> None:
        """Raise :class:`HolderScopeError` unless this identity may act with ``scope``."""
        if scope not in SCOPES:
            raise ValueError(f"unknown holder scope {scope!r}")
        if self.scope not in SCOPES or SCOPES.index(self.scope) < SCOPES.index(scope):
            raise HolderScopeError(
                f"this holder link has scope {self.scope}; creating or withdrawing a grant "
                f"needs a {scope} link, which the holder gets from the portal, not a service desk"
            )


class HolderAuthenticator(Protocol):
    """Turns what a holder presents into who they are, or raises :class:`HolderAuthError`."""

    def holder_of(self, token: str) -> HolderIdentity: ...


def link_secret(holder_key: bytes) -> bytes:
    """The MAC key of holder links, derived from the holder key (HMAC-SM3 under a fixed
    context), so no second key file is needed and the two uses never share a key."""
    return _sm3_mac(holder_key, LINK_SECRET_CONTEXT)


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise MalformedInputError(f"a holder link's scope is {' or '.join(SCOPES)}")
    return scope


class SignedHolderLinks:
    """Holder tokens MACed with HMAC-SM3, the holder in them encrypted with AES-256-GCM:
    stateless, so any worker checks any token.

    ``hasher`` is the holder-code hash of the registry (``LicenseService.holder_hash``): the
    token must name the holder exactly as the licenses do.
    """

    def __init__(
        self, secret: bytes, hasher: Callable[[str], str], clock: Clock = system_clock
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"a holder-link secret has at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._cipher = AESGCM(_sm3_mac(secret, _ENCRYPTION_CONTEXT))
        self._hasher = hasher
        self._clock = clock

    def mint(
        self,
        holder_code: str,
        code_type: str,
        minutes: int = DEFAULT_MINUTES,
        scope: str = READ,
    ) -> str:
        """A token for the holder of ``holder_code`` valid ``minutes`` (1-1440), of ``scope``.

        The code's check digits are verified, but whether it holds any license is not looked
        at: the answer is the same for everyone, so minting reveals nothing. Who may mint which
        scope is the caller's to decide.
        """
        if isinstance(minutes, bool) or not MIN_MINUTES <= minutes <= MAX_MINUTES:
            raise MalformedInputError(
                f"a holder link lives {MIN_MINUTES}-{MAX_MINUTES} minutes, not {minutes}"
            )
        check_scope(scope)
        code = check_holder_code(holder_code, code_type)
        expiry = int((self._clock() + timedelta(minutes=minutes)).timestamp())
        header = _HEADER.pack(
            TOKEN_VERSION, SCOPES.index(scope) + 1, expiry, secrets.token_bytes(12)
        )
        sealed = self._cipher.encrypt(
            header[-12:],
            _SECRET.pack(code_type.encode("ascii"), bytes.fromhex(self._hasher(code))),
            header,
        )
        body = header + sealed
        raw = body + self._mac(body)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def holder_of(self, token: str) -> HolderIdentity:
        raw = _decode(token)
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise HolderAuthError("the holder token was not issued here or was altered")
        header, sealed = body[: _HEADER.size], body[_HEADER.size :]
        version, scope, expiry, nonce = _HEADER.unpack(header)
        if version != TOKEN_VERSION:
            raise HolderAuthError(f"holder token version {version} is not supported")
        if not 1 <= scope <= len(SCOPES):
            raise HolderAuthError("the holder token has no known scope")
        expires_at = datetime.fromtimestamp(expiry, UTC)
        if self._clock() >= expires_at:
            raise HolderAuthError("the holder token has expired")
        try:
            code_type, holder_hash = _SECRET.unpack(self._cipher.decrypt(nonce, sealed, header))
        except InvalidTag:
            raise HolderAuthError("the holder token was not issued here or was altered") from None
        try:
            kind = code_type.decode("ascii")
        except UnicodeDecodeError:
            kind = ""
        if kind not in HOLDER_CODE_TYPES:
            raise HolderAuthError("the holder token names no known holder code type")
        return HolderIdentity(holder_hash.hex(), kind, None, expires_at, SCOPES[scope - 1])

    def _mac(self, body: bytes) -> bytes:
        return _sm3_mac(self._secret, _MAC_CONTEXT + body)


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
