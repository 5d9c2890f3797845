"""The certificate API for registration officers: issue from a CSR, look up, revoke.

Clients authenticate with a bearer token (``etrust client create``); tokens are stored hashed.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from etrust.audit import AuditEvent
from etrust.pki_routes import ServicesDep
from etrust.store import ApiClient
from trust.certificates import load_certificate, parse_serial, to_pem
from trust.errors import AuthError, EtrustError, ForbiddenError, MalformedInputError
from trust.profiles import get_profile
from trust.repository import REVOCATION_REASONS, IssuedCertificate

router = APIRouter(prefix="/api/v1", tags=["certificates"])

ISSUING_ROLES = frozenset({"admin", "ra-officer"})
API_PROFILES = ("seal-maker", "seal-signer", "person-signer")
"""End-entity profiles only: CA, OCSP-signer and TSA certificates are made by security officers
(``etrust`` on the CA host), never through the network API."""
MAX_CSR_CHARS = 64 * 1024


def authenticated(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> ApiClient:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError("send the API token as 'Authorization: Bearer <token>'")
    services = request.app.state.services
    client: ApiClient = services.runtime.clients.authenticate(authorization[7:].strip())
    return client


ClientDep = Annotated[ApiClient, Depends(authenticated)]


def require_role(client: ApiClient, roles: frozenset[str]) -> None:
    if client.role not in roles:
        raise ForbiddenError(
            f"role {client.role} may not do this; needs one of {', '.join(sorted(roles))}"
        )


class IssueRequest(BaseModel):
    ca: str = Field(examples=["issuing-sm2"], description="issuing CA name")
    profile: str = Field(examples=["seal-signer"])
    csr: str = Field(max_length=MAX_CSR_CHARS, description="PKCS#10 request, PEM")
    sm2_id: str = Field(
        default="1234567812345678",
        max_length=256,
        description="SM2 distinguishing ID of the request",
    )


class RevokeRequest(BaseModel):
    reason: str = Field(default="unspecified", examples=["key_compromise"])


class RevocationOut(BaseModel):
    reason: str
    revoked_at: datetime


class CertificateOut(BaseModel):
    serial: str
    ca: str
    subject: str
    profile: str
    not_before: datetime
    not_after: datetime
    status: str = Field(description="good or revoked")
    revocation: RevocationOut | None = None
    certificate: str = Field(description="PEM")


def _out(services: ServicesDep, record: IssuedCertificate) -> CertificateOut:
    rev = services.pki.repository.get_revocation(record.issuer, record.serial)
    return CertificateOut(
        serial=format(record.serial, "x"),
        ca=record.issuer,
        subject=record.subject,
        profile=record.profile,
        not_before=record.not_before,
        not_after=record.not_after,
        status="revoked" if rev else "good",
        revocation=RevocationOut(reason=rev.reason, revoked_at=rev.revoked_at) if rev else None,
        certificate=to_pem(load_certificate(record.der)).decode("ascii"),
    )


def _record(services: ServicesDep, serial: int) -> IssuedCertificate:
    ca = services.pki.find_issuer_of_serial(serial)
    record = services.pki.repository.get_certificate(ca.name, serial)
    assert record is not None  # find_issuer_of_serial found it
    return record


@router.post(
    "/certificates", status_code=201, response_model=CertificateOut, summary="Issue from a CSR"
)
def issue(body: IssueRequest, client: ClientDep, services: ServicesDep) -> CertificateOut:
    require_role(client, ISSUING_ROLES)
    get_profile(body.profile)  # unknown profiles are a 400, known but refused ones a 403
    if body.profile not in API_PROFILES:
        raise ForbiddenError(
            f"the API issues only {', '.join(API_PROFILES)} certificates, not {body.profile!r}"
        )
    ca = services.pki.ca(body.ca)
    if services.pki.parents.get(ca.name) is None:
        raise ForbiddenError(f"{ca.name} is a root CA: the API issues from issuing CAs only")
    csr = body.csr.encode("utf-8")
    event = AuditEvent(
        f"api:{client.name}", "cert.issue", ca.name, ca.key.key_uri, hashlib.sha256(csr).hexdigest()
    )
    try:
        cert = ca.issue_from_csr(csr, body.profile, sm2_id=body.sm2_id.encode("utf-8"))
    except EtrustError as exc:
        services.runtime.record(replace(event, outcome="failure", detail={"error": exc.code}))
        raise
    services.runtime.record(
        replace(event, target=f"{ca.name}/{cert.serial_number:x}", detail={"profile": body.profile})
    )
    return _out(services, _record(services, cert.serial_number))


@router.get(
    "/certificates/{serial}", response_model=CertificateOut, summary="A certificate and its status"
)
def get_certificate(serial: str, _client: ClientDep, services: ServicesDep) -> CertificateOut:
    return _out(services, _record(services, parse_serial(serial)))


@router.post(
    "/certificates/{serial}/revoke", response_model=CertificateOut, summary="Revoke a certificate"
)
def revoke(
    serial: str, body: RevokeRequest, client: ClientDep, services: ServicesDep
) -> CertificateOut:
    require_role(client, ISSUING_ROLES)
    if body.reason not in REVOCATION_REASONS:
        raise MalformedInputError(f"unknown reason {body.reason!r}")
    record = _record(services, parse_serial(serial))
    services.pki.ca(record.issuer).revoke(record.serial, body.reason)
    services.runtime.record(
        AuditEvent(
            f"api:{client.name}",
            "cert.revoke",
            f"{record.issuer}/{record.serial:x}",
            detail={"reason": body.reason},
        )
    )
    return _out(services, record)
