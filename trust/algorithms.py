"""The algorithm registry: one table, keyed by name and OID, so SM2 and RSA are peers.

Every signature the project checks goes through :func:`verify`, whatever carries it
(certificate, CRL, OCSP answer, timestamp, seal); path validation reaches it through the
certvalidator hook in :mod:`trust.validation`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos, core, keys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trust import asn1_gm
from trust.errors import (
    InvalidSignatureError,
    MalformedInputError,
    UnsupportedAlgorithmError,
    WeakKeyError,
)
from trust.sm2 import DEFAULT_ID, Sm2PublicKey

KeyType = Literal["sm2", "rsa", "ec-p256"]

MIN_RSA_BITS = 2048
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
"""DER DigestInfo header for SHA-256: devices that pad PKCS#1 v1.5 themselves take it + hash."""
RSA_SIZES = (2048, 3072, 4096)


@dataclass(frozen=True)
class SignatureAlgorithm:
    """One signature algorithm: its name, the OID that names it on the wire and its key type."""

    name: str
    oid: str
    key_type: KeyType
    hash_name: str  # hashlib name of the digest, also used for certificate IDs

    def algorithm_identifier(self) -> algos.SignedDigestAlgorithm:
        """The AlgorithmIdentifier we emit (SM2 with NULL parameters, as the government CAs do)."""
        return _IDENTIFIERS[self.name]()

    def verify(
        self,
        public_key_info: keys.PublicKeyInfo,
        signature: bytes,
        data: bytes,
        *,
        sm2_id: bytes = DEFAULT_ID,
        pss_salt: int = 32,
    ) -> None:
        """Raise :class:`InvalidSignatureError` unless ``signature`` over ``data`` is valid."""
        check_key_matches(self, public_key_info)
        der = public_key_info.dump()
        if self.key_type == "sm2":
            _sm2_public(der).verify(signature, data, sm2_id)
            return
        public = _pyca_public(der)
        try:
            if isinstance(public, rsa.RSAPublicKey):
                if public.key_size < MIN_RSA_BITS:
                    raise WeakKeyError(f"RSA key of {public.key_size} bits is below 2048")
                pad: padding.AsymmetricPadding = (
                    pss_padding(pss_salt) if self.name == "rsa-pss-sha256" else padding.PKCS1v15()
                )
                public.verify(signature, data, pad, hashes.SHA256())
            elif isinstance(public, ec.EllipticCurvePublicKey):
                public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            else:  # pragma: no cover - check_key_matches rules this out
                raise UnsupportedAlgorithmError(f"{self.name}: unexpected key type")
        except InvalidSignature as exc:
            raise InvalidSignatureError(f"{self.name} signature does not verify") from exc


def pss_padding(salt_length: int = 32) -> padding.PSS:
    """RSA-PSS with SHA-256 and MGF1-SHA-256; we sign with a 32-byte salt."""
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)


def _pss_identifier() -> algos.SignedDigestAlgorithm:
    return algos.SignedDigestAlgorithm(
        {
            "algorithm": "rsassa_pss",
            "parameters": algos.RSASSAPSSParams(
                {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1",
                        "parameters": {"algorithm": "sha256"},
                    },
                    "salt_length": 32,
                }
            ),
        }
    )


_IDENTIFIERS: dict[str, Callable[[], algos.SignedDigestAlgorithm]] = {
    "sm2-sm3": lambda: algos.SignedDigestAlgorithm(
        {"algorithm": asn1_gm.SM2_SM3_OID, "parameters": algos.Null()}
    ),
    "rsa-pkcs1-sha256": lambda: algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
    "rsa-pss-sha256": _pss_identifier,
    "ecdsa-p256-sha256": lambda: algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
}

SM2_SM3 = SignatureAlgorithm("sm2-sm3", asn1_gm.SM2_SM3_OID, "sm2", "sm3")
RSA_PKCS1_SHA256 = SignatureAlgorithm("rsa-pkcs1-sha256", "1.2.840.113549.1.1.11", "rsa", "sha256")
RSA_PSS_SHA256 = SignatureAlgorithm("rsa-pss-sha256", "1.2.840.113549.1.1.10", "rsa", "sha256")
ECDSA_P256_SHA256 = SignatureAlgorithm(
    "ecdsa-p256-sha256", "1.2.840.10045.4.3.2", "ec-p256", "sha256"
)

ALGORITHMS: dict[str, SignatureAlgorithm] = {
    a.name: a for a in (SM2_SM3, RSA_PKCS1_SHA256, RSA_PSS_SHA256, ECDSA_P256_SHA256)
}
_BY_OID: dict[str, SignatureAlgorithm] = {a.oid: a for a in ALGORITHMS.values()}
# GM/T 0010 producers sometimes name the SM2-1 scheme instead of sm2-with-sm3.
_BY_OID[asn1_gm.SM2_SIGN_OID] = SM2_SM3

DEFAULT_FOR_KEY: dict[KeyType, SignatureAlgorithm] = {
    "sm2": SM2_SM3,
    "rsa": RSA_PKCS1_SHA256,
    "ec-p256": ECDSA_P256_SHA256,
}


def by_name(name: str) -> SignatureAlgorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        known = ", ".join(sorted(ALGORITHMS))
        raise UnsupportedAlgorithmError(f"unknown algorithm {name!r}; known: {known}") from None


def from_identifier(identifier: algos.SignedDigestAlgorithm) -> SignatureAlgorithm:
    """The registry entry for an AlgorithmIdentifier met on the wire (PSS only with our params)."""
    oid = identifier["algorithm"].dotted
    alg = _BY_OID.get(oid)
    if alg is None:
        raise UnsupportedAlgorithmError(f"signature algorithm {oid} is not supported")
    if alg is RSA_PSS_SHA256:
        pss_salt_length(identifier)  # checks the parameters
    return alg


def pss_salt_length(identifier: algos.SignedDigestAlgorithm) -> int:
    """The salt length an RSA-PSS AlgorithmIdentifier states; only SHA-256 with MGF1-SHA-256.

    OpenSSL signs PSS requests with the longest salt by default, so the stated length is used
    for verification rather than assuming ours (32).
    """
    params = identifier["parameters"]
    try:
        if not isinstance(params, algos.RSASSAPSSParams):
            raise ValueError("no parameters")
        salt = int(params["salt_length"].native)
        if (
            params["hash_algorithm"]["algorithm"].native != "sha256"
            or params["mask_gen_algorithm"]["algorithm"].native != "mgf1"
            or params["mask_gen_algorithm"]["parameters"]["algorithm"].native != "sha256"
            or params["trailer_field"].native != "trailer_field_bc"
            or not 0 <= salt <= 1024
        ):
            raise ValueError("parameters")
    except (ValueError, TypeError, KeyError) as exc:
        raise UnsupportedAlgorithmError(
            "RSA-PSS is supported with SHA-256, MGF1-SHA-256 and explicit parameters"
        ) from exc
    return salt


def key_type_of(public_key_info: keys.PublicKeyInfo) -> KeyType:
    """Classify a SubjectPublicKeyInfo; SM2 is id-ecPublicKey on curve 1.2.156.10197.1.301."""
    try:
        algorithm = public_key_info["algorithm"]["algorithm"].native
        if algorithm == "rsa":
            return "rsa"
        if algorithm == "ec":
            curve = public_key_info["algorithm"]["parameters"]
            if curve.name == "named":
                dotted = curve.chosen.dotted
                if dotted == asn1_gm.SM2_CURVE_OID:
                    return "sm2"
                if dotted == "1.2.840.10045.3.1.7":
                    return "ec-p256"
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedInputError(f"unreadable public key: {exc}") from exc
    raise UnsupportedAlgorithmError(f"public key type {algorithm!r} is not supported")


def check_key_matches(alg: SignatureAlgorithm, public_key_info: keys.PublicKeyInfo) -> None:
    kt = key_type_of(public_key_info)
    if kt != alg.key_type:
        raise UnsupportedAlgorithmError(f"{alg.name} cannot be used with a {kt} key")


def check_key_strength(public_key_info: keys.PublicKeyInfo) -> None:
    """Refuse keys we would not certify (RSA below 2048 or above 4096 bits)."""
    if key_type_of(public_key_info) == "rsa":
        bits = public_key_info["public_key"].parsed["modulus"].native.bit_length()
        if bits < MIN_RSA_BITS:
            raise WeakKeyError(f"RSA key of {bits} bits; at least {MIN_RSA_BITS} are required")
        if bits > RSA_SIZES[-1]:
            raise UnsupportedAlgorithmError(
                f"RSA key of {bits} bits; keys of {', '.join(map(str, RSA_SIZES))} bits are certified"
            )


def verify(
    public_key_info: keys.PublicKeyInfo,
    identifier: algos.SignedDigestAlgorithm,
    signature: bytes,
    data: bytes,
    *,
    sm2_id: bytes = DEFAULT_ID,
) -> None:
    """Verify a signature named by its wire AlgorithmIdentifier (PSS with its stated salt)."""
    alg = from_identifier(identifier)
    salt = pss_salt_length(identifier) if alg is RSA_PSS_SHA256 else 32
    alg.verify(public_key_info, signature, data, sm2_id=sm2_id, pss_salt=salt)


def signature_octets(bit_string: core.Asn1Value) -> bytes:
    """The octets of a signature BIT STRING, refusing unused bits.

    asn1crypto drops unused bits silently; accepting them would give one signed object two
    encodings (and two fingerprints), so every signature read from the wire passes here.
    """
    contents = bytes(bit_string.contents or b"")
    if not contents or contents[0] != 0:
        raise InvalidSignatureError("the signature BIT STRING has unused bits or is empty")
    return contents[1:]


def verify_signed(
    public_key_info: keys.PublicKeyInfo,
    identifier: algos.SignedDigestAlgorithm,
    signature: core.Asn1Value,
    data: bytes,
    *,
    sm2_id: bytes = DEFAULT_ID,
) -> None:
    """Verify a signed structure: its AlgorithmIdentifier, signature BIT STRING and TBS bytes."""
    verify(public_key_info, identifier, signature_octets(signature), data, sm2_id=sm2_id)


@functools.lru_cache(maxsize=1024)
def _sm2_public(der: bytes) -> Sm2PublicKey:
    return Sm2PublicKey(der)


@functools.lru_cache(maxsize=1024)
def _pyca_public(der: bytes) -> PublicKeyTypes:
    try:
        return serialization.load_der_public_key(der)
    except ValueError as exc:
        raise MalformedInputError(f"unreadable public key: {exc}") from exc
