"""Departments' electronic seals: making them (制章), keeping them, and sealing files with them.

A seal here is a GB/T 38540 SESeal signed by the hierarchy's seal maker (制章者, a service
identity made by ``etrust init``), listing exactly one signer certificate: the department's seal
key, generated for the seal (or named on a device) and certified by the issuing CA with the
``seal-signer`` profile. The key is a managed key (purpose ``seal``), so suspending, revoking
or destroying it follows the security officers' lifecycle; a seal whose key is not active does
not sign.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from asn1crypto import x509
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from etrust import security_ops
from etrust.audit import AuditEvent
from etrust.devices import key_on_device, stored_uri
from etrust.models import ManagedKeyRow, SealRow
from etrust.runtime import Runtime
from etrust.services import tsa_for
from etrust.store import check_name
from etrust.transparency import log_seal_use
from signing.context import LocalTimestamper
from storage.engine import transaction
from trust.certificates import load_certificate, make_name
from trust.errors import (
    ConflictError,
    ForbiddenError,
    KeyStateError,
    MalformedInputError,
    NotFoundError,
)
from trust.keys import KeyHandle

SealAlg = Literal["sm2", "rsa"]
SEAL_KEY_SPECS: dict[str, str] = {"sm2": "sm2", "rsa": "rsa-2048"}
MAX_VALID_DAYS = 3 * 365
"""A seal lives no longer than its signer certificate (the seal-signer profile: three years)."""
SEAL_TYPES = {1: "单位公章", 2: "个人印章", 3: "业务专用章", 4: "合同专用章", 5: "财务专用章"}
"""Seal types (SES_ESPropertyInfo.type): business-defined in GB/T 38540; these are ours."""


@dataclass(frozen=True)
class SealRecord:
    es_id: str
    department: str
    name: str
    alg: str
    seal_type: int
    version: int
    valid_from: datetime
    valid_to: datetime
    seal_der: bytes
    key_name: str
    status: str
    created_by: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The stable listing form (``etrust seal list --json`` and the API)."""
        return {
            "id": self.es_id,
            "name": self.name,
            "alg": self.alg,
            "department": self.department,
            "type": self.seal_type,
            "version": self.version,
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat(),
            "status": self.status,
        }


KEY_STATE_TO_SEAL_STATUS = {"active": "active", "suspended": "suspended"}
"""A seal's status from its key's lifecycle state; any other key state means revoked."""


def _record(row: SealRow, key_state: str) -> SealRecord:
    status = (
        row.status if row.status != "active" else KEY_STATE_TO_SEAL_STATUS.get(key_state, "revoked")
    )
    return SealRecord(
        row.es_id,
        row.department,
        row.name,
        row.alg,
        row.seal_type,
        row.version,
        row.valid_from,
        row.valid_to,
        row.seal_der,
        row.key_name,
        status,
        row.created_by,
        row.created_at,
    )


class SealStore:
    """The seals table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, es_id: str) -> SealRecord:
        found = self._query(SealRow.es_id == es_id)
        if not found:
            raise NotFoundError(f"no seal with id {es_id!r}")
        return found[0]

    def list(self, department: str | None = None) -> builtins.list[SealRecord]:
        return self._query(SealRow.department == department if department is not None else None)

    def _query(self, where: Any) -> builtins.list[SealRecord]:
        """Seals with the status their key gives them: a seal is only as live as its key."""
        query = (
            select(SealRow, ManagedKeyRow.state)
            .join(ManagedKeyRow, ManagedKeyRow.name == SealRow.key_name)
            .order_by(SealRow.es_id)
        )
        if where is not None:
            query = query.where(where)
        with transaction(self._sessions) as session:
            return [_record(row, state) for row, state in session.execute(query)]

    def next_es_id(self, area_code: str) -> str:
        """The next seal code: the area code and an 8-digit serial (like the police seal code)."""
        with transaction(self._sessions) as session:
            sealed = session.scalar(
                select(func.max(SealRow.es_id)).where(SealRow.es_id.like(f"{area_code}%"))
            )
            # A seal whose making failed part-way used its code for its key: never reuse one.
            keyed = session.scalar(
                select(func.max(ManagedKeyRow.name)).where(
                    ManagedKeyRow.name.like(f"seal-{area_code}%")
                )
            )
        codes = [sealed or "", (keyed or "").removeprefix("seal-")]
        latest = max((c for c in codes if c[len(area_code) :].isdigit()), default=None)
        serial = int(latest[len(area_code) :]) + 1 if latest else 1
        return f"{area_code}{serial:08d}"

    def add(self, record: SealRecord) -> None:
        try:
            with transaction(self._sessions, write=True) as session:
                session.add(
                    SealRow(
                        es_id=record.es_id,
                        department=record.department,
                        name=record.name,
                        alg=record.alg,
                        seal_type=record.seal_type,
                        version=record.version,
                        valid_from=record.valid_from,
                        valid_to=record.valid_to,
                        seal_der=record.seal_der,
                        key_name=record.key_name,
                        status=record.status,
                        created_by=record.created_by,
                        created_at=record.created_at,
                    )
                )
        except IntegrityError:
            raise ConflictError(f"a seal with id {record.es_id} already exists") from None


@dataclass(frozen=True)
class SealRequest:
    """What a department asks for (制章申请)."""

    department: str
    name: str
    alg: SealAlg = "sm2"
    seal_type: int = 1
    valid_days: int = MAX_VALID_DAYS
    title: str = ""
    picture_png: bytes | None = None
    """An uploaded picture (PNG or JPEG); without one a red round seal is drawn."""
    width_mm: int = 40
    height_mm: int = 40
    key_uri: str | None = None
    """The seal key on a device (``pkcs11:``, ``skf:``, ``sdf:``); default: a software key."""
    version: int = 4
    """4 (GB/T 38540-2020) or 5 (GM/T 0031-2025: the maker's signature timestamped)."""
    extra_signers: tuple[bytes, ...] = ()
    """Certificates (DER) of further signers the seal allows, e.g. a clerk's USB key."""

    def checked(self) -> SealRequest:
        check_name(self.department, "department code")
        if not 1 <= len(self.name.strip()) <= 100 or re.search(r"[\x00-\x1f]", self.name):
            raise MalformedInputError("a seal name is 1-100 printable characters")
        if self.alg not in SEAL_KEY_SPECS:
            raise MalformedInputError(f"seal algorithm is sm2 or rsa, not {self.alg!r}")
        if self.seal_type not in SEAL_TYPES:
            known = ", ".join(f"{k} {v}" for k, v in SEAL_TYPES.items())
            raise MalformedInputError(f"unknown seal type {self.seal_type}; known: {known}")
        if not 1 <= self.valid_days <= MAX_VALID_DAYS:
            raise MalformedInputError(f"a seal is valid for 1 to {MAX_VALID_DAYS} days")
        if not (20 <= self.width_mm <= 80 and 20 <= self.height_mm <= 80):
            raise MalformedInputError("seal pictures are 20-80 mm wide and high")
        if len(self.title) > 20:
            raise MalformedInputError("a seal title is at most 20 characters")
        if self.version not in (4, 5):
            raise MalformedInputError("seals are made as version 4 (GB/T 38540) or 5 (GM/T 0031)")
        if len(self.extra_signers) > 16:
            raise MalformedInputError("a seal lists at most 16 further signers")
        for der in self.extra_signers:
            load_certificate(der)  # MalformedInputError for anything but a certificate
        return self

    def params(self) -> dict[str, str]:
        """What an approval of ``seal.make`` is bound to."""
        picture = hashlib.sha256(self.picture_png or b"").hexdigest()
        return {
            "department": self.department,
            "name": self.name,
            "alg": self.alg,
            "type": str(self.seal_type),
            "valid_days": str(self.valid_days),
            "picture_sha256": picture,
            "key_uri": self.key_uri or "",
            "version": str(self.version),
            "title": self.title,
            "size_mm": f"{self.width_mm}x{self.height_mm}",
            "extra_signers_sha256": hashlib.sha256(b"".join(self.extra_signers)).hexdigest(),
        }


def make_department_seal(
    rt: Runtime, actor: str, request: SealRequest, approval: str | None
) -> SealRecord:
    """Make a seal: signer key and certificate, the SESeal signed by the seal maker, the record.

    Under dual control when ``seal.make`` is configured. Nothing half-made stays usable: if a
    step after the certificate fails, the certificate is revoked and the key retired.
    """
    from signing.seal import SealPicture, SealSpec, make_seal
    from signing.seal_picture import check_uploaded_picture, red_seal_png

    request = request.checked()
    # Everything that can be refused is refused before an approval is spent on it.
    if request.picture_png is not None:
        kind, _, _ = check_uploaded_picture(request.picture_png)
        picture = SealPicture(kind, request.picture_png, request.width_mm, request.height_mm)
    else:
        png = red_seal_png(request.name, title=request.title, diameter_mm=request.width_mm)
        picture = SealPicture("PNG", png, request.width_mm, request.width_mm)
    store = SealStore(rt.sessions)
    pki = rt.pki()
    issuing = pki.ca(f"issuing-{request.alg}")
    maker_identity = rt.identities.get(f"seal-maker-{request.alg}")
    if maker_identity is None:
        raise NotFoundError(f"no {request.alg} seal maker: run etrust init to create it")
    security_ops.approve_if_required(rt, "seal.make", request.name, request.params(), approval)
    es_id = store.next_es_id(rt.settings.naming.area_code)
    key_name = f"seal-{es_id}"
    spec = SEAL_KEY_SPECS[request.alg]
    if request.key_uri:
        key = key_on_device(rt.keys, request.key_uri, key_name, spec)
        key_uri = stored_uri(request.key_uri)
    else:
        key = rt.keys.backend("soft").generate(key_name, spec)
        key_uri = key.key_uri
    rt.lifecycle.register(
        key_name, "seal", key, actor, f"seal {es_id} {request.name}", key_uri=key_uri
    )
    subject = make_name(
        {
            "C": "CN",
            "O": request.name,
            "OU": request.department,
            "CN": f"{request.name}（电子印章）",
        }
    )
    cert: x509.Certificate | None = None
    try:
        cert = issuing.issue(
            key.public_key_info,
            subject,
            "seal-signer",
            validity=timedelta(days=request.valid_days),
        )
        rt.lifecycle.certify(key_name, cert, issuing.name, actor, f"seal-signer for {es_id}")
        valid_from = cert.not_valid_before
        valid_to = cert.not_valid_after
        seal_der = make_seal(
            SealSpec(
                es_id=es_id,
                name=request.name,
                seal_type=request.seal_type,
                signer_certs=[cert, *(load_certificate(d) for d in request.extra_signers)],
                valid_from=valid_from,
                valid_to=valid_to,
                picture=picture,
            ),
            rt.keys.find(maker_identity.key_uri),
            load_certificate(maker_identity.certificate_der),
            version=request.version,
            timestamper=LocalTimestamper(tsa_for(rt, request.alg))
            if request.version == 5
            else None,
        )
        record = SealRecord(
            es_id,
            request.department,
            request.name,
            request.alg,
            request.seal_type,
            request.version,
            valid_from,
            valid_to,
            seal_der,
            key_name,
            "active",
            actor,
            issuing.clock(),
        )
        store.add(record)
        rt.lifecycle.transition(key_name, "active", actor, f"seal {es_id} made")
    except BaseException:
        # Each undo step on its own: a failing one must not leave the key usable.
        with contextlib.suppress(Exception):
            rt.lifecycle.transition(key_name, "revoked", actor, "seal making failed part-way")
        if cert is not None:
            with contextlib.suppress(Exception):
                issuing.revoke(cert.serial_number, "cessation_of_operation")
        raise
    rt.record(
        AuditEvent(
            actor,
            "seal.make",
            es_id,
            key_uri,
            hashlib.sha256(seal_der).hexdigest(),
            detail={"department": request.department, "name": request.name, "alg": request.alg},
        )
    )
    return record


@dataclass(frozen=True)
class SealSigner:
    """A seal ready to sign: its record, key, certificate and the chain above it."""

    seal: SealRecord
    key: KeyHandle
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    timestamper: LocalTimestamper


def seal_signer(rt: Runtime, es_id: str) -> SealSigner:
    """The seal ``es_id`` if it may sign now: active, within its validity, its key active."""
    seal = SealStore(rt.sessions).get(es_id)
    if seal.status != "active":
        raise ForbiddenError(f"seal {es_id} is {seal.status}")
    now = rt.pki().ca(f"issuing-{seal.alg}").clock()
    if not seal.valid_from <= now <= seal.valid_to:
        raise ForbiddenError(
            f"seal {es_id} is valid {seal.valid_from:%Y-%m-%d} to {seal.valid_to:%Y-%m-%d}"
        )
    managed = rt.lifecycle.get(seal.key_name)
    if managed.state != "active":
        raise KeyStateError(f"the key of seal {es_id} is {managed.state}; it does not sign")
    cert = managed.certificate
    if cert is None or managed.ca_name is None:
        raise KeyStateError(f"the key of seal {es_id} has no certificate")
    pki = rt.pki()
    ca = pki.ca(managed.ca_name)
    return SealSigner(
        seal,
        rt.keys.find(managed.key_uri),
        cert,
        (ca.certificate, *pki.chain_above(ca.name)),
        LocalTimestamper(tsa_for(rt, seal.alg)),
    )


PDF_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")


def seal_pdf(
    signer: SealSigner,
    data: bytes,
    level: str,
    *,
    box_mm: tuple[float, float, float, float] | None = None,
    crls: tuple[bytes, ...] = (),
) -> bytes:
    """A PAdES signature at ``level`` with the seal's picture as the visible stamp, in
    ``box_mm`` (from the lower-left corner; default near the lower right, the picture's size).
    B-LT and B-LTA embed ``crls``."""
    from signing.pdf import RevocationData, Stamp, sign_pdf
    from signing.seal import parse_seal

    picture = parse_seal(signer.seal.seal_der).picture
    box = box_mm or (140.0, 20.0, picture.width_mm, picture.height_mm)
    return sign_pdf(
        data,
        signer.key,
        signer.certificate,
        chain=signer.chain,
        level=level,  # type: ignore[arg-type]
        timestamper=signer.timestamper,
        revocation=RevocationData(crls=crls) if level in ("B-LT", "B-LTA") else None,
        stamp=Stamp(png=picture.data, box_mm=box) if picture.type.upper() == "PNG" else None,
        reason=f"{signer.seal.name} 电子印章",
    )


def seal_file(
    rt: Runtime, actor: str, es_id: str, data: bytes, *, pdf_level: str = "B-T"
) -> tuple[str, bytes]:
    """Seal a file: an OFD or PDF gets a signature inside, anything else a detached CMS.

    Returns the format (``ofd``, ``pdf`` or ``cms``) and the signed file (or the signature).
    PDFs are signed at ``pdf_level``; B-LT and B-LTA embed our CAs' current CRLs.
    """
    if pdf_level not in PDF_LEVELS:
        raise MalformedInputError(f"PAdES level is one of {', '.join(PDF_LEVELS)}")
    from signing.verifier import detect_format

    signer = seal_signer(rt, es_id)
    kind = detect_format(data)
    if kind == "ofd":
        from signing.ofd import sign_ofd

        out = sign_ofd(
            data,
            signer.seal.seal_der,
            signer.key,
            signer.certificate,
            timestamper=signer.timestamper,
        )
    elif kind == "pdf":
        crls = (
            tuple(ca.crl().dump() for ca in rt.pki().cas.values())
            if pdf_level in ("B-LT", "B-LTA")
            else ()
        )
        out = seal_pdf(signer, data, pdf_level, crls=crls)
    else:
        from signing.cms import sign_detached

        kind = "cms"
        out = sign_detached(
            data,
            signer.key,
            signer.certificate,
            chain=signer.chain,
            timestamper=signer.timestamper,
        )
    digest = hashlib.sha256(data).hexdigest()
    log_seal_use(rt, es_id, kind, digest, actor)
    rt.record(
        AuditEvent(actor, "seal.sign", es_id, signer.key.key_uri, digest, detail={"format": kind})
    )
    return kind, out
