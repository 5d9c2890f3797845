"""Key ceremonies as files: declared keys and certificates, run end to end, with a signed transcript.

A ceremony file (TOML) says what is to happen::

    [ceremony]
    name = "2026 年度电子印章密钥生成"
    witnesses = ["zhang", "li"]          # registered security officers present

    [[keys]]
    name = "seal-market-2026"           # the managed key's name (and software label)
    purpose = "seal"
    spec = "sm2"                        # sm2, rsa-2048, rsa-3072, rsa-4096, ec-p256
    uri = "pkcs11:token=hall1;object=seal-market-2026"   # optional: on a device

    [[certificates]]
    key = "seal-market-2026"
    ca = "issuing-sm2"
    profile = "seal-signer"
    subject = "/C=CN/O=示范盟市场监督管理局/CN=电子印章"

Everything is checked before the first key is made (names, CAs, profiles, subjects, witnesses),
so a bad file changes nothing. The transcript lists every step with hashes and is signed by the
audit key; ``verify_transcript`` checks it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import keys as asn1_keys

from etrust.devices import HARDWARE_SCHEMES, key_on_device, stored_uri
from etrust.lifecycle import PURPOSES, KeyLifecycle
from etrust.pki import Pki
from etrust.store import check_name
from trust.algorithms import DEFAULT_FOR_KEY, key_type_of
from trust.certificates import make_name
from trust.errors import ConfigurationError, EtrustError, InvalidSignatureError, MalformedInputError
from trust.keys import KEY_SPECS, KeyHandle, KeyRegistry, KeyUri
from trust.profiles import get_profile

TRANSCRIPT_CONTEXT = "etrust-ceremony-transcript-v1"


@dataclass(frozen=True)
class KeySpec:
    name: str
    purpose: str
    spec: str
    uri: str | None = None


@dataclass(frozen=True)
class CertificateSpec:
    key: str
    ca: str
    profile: str
    subject: str


@dataclass(frozen=True)
class Ceremony:
    name: str
    witnesses: tuple[str, ...]
    keys: tuple[KeySpec, ...]
    certificates: tuple[CertificateSpec, ...]
    file_hash: str = field(default="")


def parse(text: bytes) -> Ceremony:
    """Read a ceremony file; any structural fault is a MalformedInputError naming it."""
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MalformedInputError(f"the ceremony file is not valid TOML: {exc}") from exc
    head = data.get("ceremony")
    if (
        not isinstance(head, dict)
        or not isinstance(head.get("name"), str)
        or not head["name"].strip()
    ):
        raise MalformedInputError("the ceremony file needs [ceremony] with a name")
    witnesses = head.get("witnesses", [])
    if not isinstance(witnesses, list) or not all(isinstance(w, str) for w in witnesses):
        raise MalformedInputError("ceremony.witnesses is a list of officer names")
    try:
        key_specs = tuple(
            KeySpec(str(k["name"]), str(k["purpose"]), str(k["spec"]), _uri(k.get("uri")))
            for k in data.get("keys", [])
        )
        cert_specs = tuple(
            CertificateSpec(str(c["key"]), str(c["ca"]), str(c["profile"]), str(c["subject"]))
            for c in data.get("certificates", [])
        )
    except (KeyError, TypeError) as exc:
        raise MalformedInputError(f"a [[keys]] or [[certificates]] entry lacks {exc}") from exc
    if not key_specs:
        raise MalformedInputError("the ceremony makes no keys")
    return Ceremony(
        head["name"], tuple(witnesses), key_specs, cert_specs, hashlib.new("sm3", text).hexdigest()
    )


def _uri(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or KeyUri.parse(value).scheme not in HARDWARE_SCHEMES:
        raise MalformedInputError("a key's uri is a device URI (pkcs11:, skf:, sdf:)")
    return value


def check(
    ceremony: Ceremony,
    pki: Pki,
    lifecycle: KeyLifecycle,
    officers: list[str],
    keys: KeyRegistry | None = None,
) -> None:
    """Everything that can be known before the first key is made."""
    names = [k.name for k in ceremony.keys]
    if len(set(names)) != len(names):
        raise MalformedInputError("a key name appears twice in the ceremony")
    existing = {k.name for k in lifecycle.list()}
    for spec in ceremony.keys:
        check_name(spec.name, "key name")
        if spec.name in existing:
            raise MalformedInputError(f"a managed key named {spec.name} exists already")
        if spec.purpose not in PURPOSES:
            raise MalformedInputError(
                f"key {spec.name}: purpose must be one of {', '.join(PURPOSES)}"
            )
        if spec.spec not in KEY_SPECS:
            raise MalformedInputError(
                f"key {spec.name}: spec must be one of {', '.join(KEY_SPECS)}"
            )
    certified = [c.key for c in ceremony.certificates]
    if len(set(certified)) != len(certified):
        raise MalformedInputError("a key gets at most one certificate in a ceremony")
    soft = keys.backend("soft") if keys is not None else None
    for spec in ceremony.keys:
        if spec.uri is None and soft is not None and f"soft:object={spec.name}" in soft.list():
            raise MalformedInputError(f"a software key labelled {spec.name} exists already")
    for cert in ceremony.certificates:
        if cert.key not in names:
            raise MalformedInputError(f"certificate for {cert.key}: no such key in the ceremony")
        pki.ca(cert.ca)
        if get_profile(cert.profile).ca:
            raise MalformedInputError(
                "ceremonies issue end-entity certificates; CAs are made by init"
            )
        make_name(cert.subject)
    missing = [w for w in ceremony.witnesses if w not in officers]
    if missing:
        raise MalformedInputError(
            f"witnesses who are not registered officers: {', '.join(missing)}"
        )


def run(
    ceremony: Ceremony,
    *,
    pki: Pki,
    keys: KeyRegistry,
    lifecycle: KeyLifecycle,
    officers: list[str],
    actor: str,
    signer: KeyHandle | None,
) -> dict[str, Any]:
    """Make the keys, issue the certificates, and return the signed transcript."""
    if signer is None:
        raise ConfigurationError("no audit key to sign the transcript: run etrust init first")
    check(ceremony, pki, lifecycle, officers, keys)
    started = datetime.now(UTC)
    steps: list[dict[str, Any]] = []
    made: dict[str, KeyHandle] = {}
    issued: list[tuple[str, int]] = []
    outcome = "completed"
    try:
        for spec in ceremony.keys:
            key = (
                key_on_device(keys, spec.uri, spec.name, spec.spec)
                if spec.uri
                else keys.backend("soft").generate(spec.name, spec.spec)
            )
            lifecycle.register(
                spec.name,
                spec.purpose,
                key,
                actor,
                f"ceremony {ceremony.name}",
                key_uri=stored_uri(spec.uri) if spec.uri else None,
            )
            made[spec.name] = key
            steps.append(
                {
                    "step": "key.generate",
                    "key": spec.name,
                    "key_uri": key.key_uri,
                    "spki_sha256": hashlib.sha256(key.public_key_info.dump()).hexdigest(),
                }
            )
        for cert_spec in ceremony.certificates:
            ca = pki.ca(cert_spec.ca)
            cert = ca.issue(
                made[cert_spec.key].public_key_info, make_name(cert_spec.subject), cert_spec.profile
            )
            issued.append((ca.name, cert.serial_number))
            steps.append(  # recorded as soon as it exists, whatever happens next
                {
                    "step": "certificate.issue",
                    "key": cert_spec.key,
                    "ca": ca.name,
                    "serial": format(cert.serial_number, "x"),
                    "certificate_sha256": hashlib.sha256(cert.dump()).hexdigest(),
                    "certificate": base64.b64encode(cert.dump()).decode(),
                }
            )
            reason = f"ceremony {ceremony.name}"
            lifecycle.certify(cert_spec.key, cert, ca.name, actor, reason)
            lifecycle.transition(cert_spec.key, "active", actor, reason)
    except EtrustError as exc:
        outcome = f"failed: {exc.code}"
        steps.append({"step": "error", "code": exc.code, "message": exc.message})
        steps += _undo(pki, lifecycle, made, issued, actor, f"ceremony {ceremony.name} failed")
    transcript = {
        "context": TRANSCRIPT_CONTEXT,
        "ceremony": ceremony.name,
        "file_sm3": ceremony.file_hash,
        "operator": actor,
        "witnesses": list(ceremony.witnesses),
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "outcome": outcome,
        "steps": steps,
    }
    return sign_transcript(transcript, signer)


def _undo(
    pki: Pki,
    lifecycle: KeyLifecycle,
    made: dict[str, KeyHandle],
    issued: list[tuple[str, int]],
    actor: str,
    reason: str,
) -> list[dict[str, Any]]:
    """After a failure part-way: revoke what was issued and retire the keys that were made, so
    nothing from a failed ceremony can be used (each undo step is itself in the transcript)."""
    steps: list[dict[str, Any]] = []
    for ca_name, serial in issued:
        try:
            ca = pki.ca(ca_name)
            if ca.repository.get_revocation(ca_name, serial) is None:
                ca.revoke(serial, "cessation_of_operation")
            steps.append({"step": "undo.revoke", "ca": ca_name, "serial": format(serial, "x")})
        except EtrustError as exc:
            steps.append({"step": "undo.failed", "serial": format(serial, "x"), "code": exc.code})
    for name in made:
        try:
            if lifecycle.get(name).state != "revoked":
                lifecycle.transition(name, "revoked", actor, reason)
            steps.append({"step": "undo.retire", "key": name})
        except EtrustError as exc:
            steps.append({"step": "undo.failed", "key": name, "code": exc.code})
    return steps


def _canonical(transcript: dict[str, Any]) -> bytes:
    return json.dumps(
        transcript, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    ).encode()


def sign_transcript(transcript: dict[str, Any], signer: KeyHandle) -> dict[str, Any]:
    algorithm = DEFAULT_FOR_KEY[signer.key_type]
    return {
        "transcript": transcript,
        "algorithm": algorithm.name,
        "public_key": base64.b64encode(signer.public_key_info.dump()).decode(),
        "signature": base64.b64encode(signer.sign(_canonical(transcript), algorithm)).decode(),
    }


def verify_transcript(
    document: dict[str, Any], trusted: list[asn1_keys.PublicKeyInfo]
) -> dict[str, Any]:
    """Return the transcript if its signature verifies with one of the ``trusted`` keys."""
    try:
        transcript = document["transcript"]
        public = asn1_keys.PublicKeyInfo.load(
            base64.b64decode(document["public_key"], validate=True)
        )
        signature = base64.b64decode(document["signature"], validate=True)
        algorithm = DEFAULT_FOR_KEY[key_type_of(public)]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedInputError(f"not a ceremony transcript ({exc})") from exc
    if public.dump() not in {k.dump() for k in trusted}:
        raise InvalidSignatureError(
            "the transcript is signed by a key that is not this home's audit key"
        )
    if algorithm.name != document.get("algorithm"):
        raise InvalidSignatureError(
            "the transcript names another signature algorithm than its key's"
        )
    algorithm.verify(public, signature, _canonical(transcript))
    return dict(transcript)
