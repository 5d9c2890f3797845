"""Signed case outcomes: what the portal and the case modules it wraps call when a case ends.

The outcome is JSON data, canonicalised (RFC 8785) and signed with the department's seal key
as a detached CMS with a timestamp (GM/T 0010 OIDs for SM2). It is kept, so the verification
link (an unguessable id) shows the outcome, its signature and a fresh verification report.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from etrust.audit import AuditEvent
from etrust.models import SignedOutcomeRow
from etrust.runtime import Runtime
from etrust.seals import SealStore, seal_signer
from etrust.transparency import log_seal_use
from storage.engine import transaction
from trust.errors import ForbiddenError, InputTooLargeError, MalformedInputError, NotFoundError

MAX_OUTCOME_BYTES = 256 * 1024
"""A case outcome is a decision and its facts, not its attachments (those are documents)."""


@dataclass(frozen=True)
class SignedOutcomeRecord:
    id: str
    seal: str
    case_ref: str | None
    canonical: bytes
    signature: bytes
    digest: str
    signed_by: str
    created_at: datetime

    def link(self, base_url: str) -> str:
        return f"{base_url}/api/v1/outcomes/{self.id}"

    def to_dict(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "seal": self.seal,
            "case_ref": self.case_ref,
            "digest": self.digest,
            "signature": base64.b64encode(self.signature).decode(),
            "canonical": self.canonical.decode("utf-8"),
            "signed_at": self.created_at.isoformat(),
            "verification_link": self.link(base_url),
        }


def sign_case_outcome(
    rt: Runtime,
    actor: str,
    seal_id: str,
    outcome: Mapping[str, Any],
    *,
    case_ref: str | None = None,
    department: str | None = None,
) -> SignedOutcomeRecord:
    """Sign ``outcome`` with seal ``seal_id`` and keep it; ``department`` (an API client's)
    must own the seal when given."""
    from signing.jcs import canonicalize
    from signing.outcome import sign_outcome

    if case_ref is not None and not 1 <= len(case_ref) <= 128:
        raise MalformedInputError("case_ref is 1-128 characters")
    if len(canonicalize(outcome)) > MAX_OUTCOME_BYTES:  # before any key is used
        raise InputTooLargeError(f"an outcome is at most {MAX_OUTCOME_BYTES} bytes of JSON")
    if department is not None:  # before anything tells whether the seal exists or works
        try:
            owner = SealStore(rt.sessions).get(seal_id).department
        except NotFoundError:
            owner = None
        if owner != department:
            raise ForbiddenError(f"seal {seal_id} is not one of this department's seals")
    signer = seal_signer(rt, seal_id)
    signed = sign_outcome(
        outcome, signer.key, signer.certificate, chain=signer.chain, timestamper=signer.timestamper
    )
    record = SignedOutcomeRecord(
        secrets.token_hex(16),
        seal_id,
        case_ref,
        signed.canonical,
        signed.signature,
        signed.digest_hex,
        actor,
        rt.pki().ca(f"issuing-{signer.seal.alg}").clock(),
    )
    with transaction(rt.sessions, write=True) as session:
        session.add(
            SignedOutcomeRow(
                id=record.id,
                seal_es_id=record.seal,
                case_ref=record.case_ref,
                canonical=record.canonical,
                signature=record.signature,
                digest=record.digest,
                signed_by=record.signed_by,
                created_at=record.created_at,
            )
        )
        log_seal_use(rt, seal_id, "outcome", record.digest, actor, session)
    rt.record(
        AuditEvent(
            actor,
            "outcome.sign",
            record.id,
            signer.key.key_uri,
            record.digest,
            detail={"seal": seal_id, "case_ref": case_ref},
        )
    )
    return record


def get_outcome(rt: Runtime, outcome_id: str) -> SignedOutcomeRecord:
    if not (len(outcome_id) == 32 and all(c in "0123456789abcdef" for c in outcome_id)):
        raise NotFoundError("no such signed outcome")
    with transaction(rt.sessions) as session:
        row = session.scalar(select(SignedOutcomeRow).where(SignedOutcomeRow.id == outcome_id))
        if row is None:
            raise NotFoundError("no such signed outcome")
        return SignedOutcomeRecord(
            row.id,
            row.seal_es_id,
            row.case_ref,
            row.canonical,
            row.signature,
            row.digest,
            row.signed_by,
            row.created_at,
        )
