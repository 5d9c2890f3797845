"""The transparency log of a home: license events (license_store) and seal uses (here).

A seal that signs a document, an outcome or a file leaves a log entry with the seal, what was
signed (its SHA-256) and when, so a department can later see every use of its seals, and an
auditor can see that none was hidden.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from etrust.pki import LOG_IDENTITY
from etrust.runtime import Runtime
from license_store.translog import TransparencyLog
from signing.jcs import canonicalize
from storage.engine import transaction
from trust.clock import system_clock


def transparency_log(rt: Runtime) -> TransparencyLog:
    """The home's log, its checkpoints signed by the ``log-sm2`` key (made by init)."""
    cached: TransparencyLog | None = rt.__dict__.get("_transparency_log")
    if cached is None:
        identity = rt.identities.get(LOG_IDENTITY)
        key = rt.keys.find(identity.key_uri) if identity is not None else None
        cached = TransparencyLog(rt.sessions, key)
        rt.__dict__["_transparency_log"] = cached
    return cached


def seal_use_record(es_id: str, kind: str, sha256_hex: str, actor: str) -> bytes:
    return canonicalize(
        {
            "action": "seal.use",
            "seal": es_id,
            "format": kind,
            "sha256": sha256_hex,
            "actor": actor,
            "at": system_clock().isoformat(),
        }
    )


def log_seal_use(
    rt: Runtime,
    es_id: str,
    kind: str,
    sha256_hex: str,
    actor: str,
    session: Session | None = None,
) -> int:
    """Append a seal use; in ``session`` when given (the caller's transaction), else in its
    own. A home without a log key (made before the log existed) logs nothing: run init."""
    log = transparency_log(rt)
    if rt.identities.get(LOG_IDENTITY) is None:
        return -1
    record = seal_use_record(es_id, kind, sha256_hex, actor)
    if session is not None:
        (index,) = log.append(session, [record])
        log.sign_head(session)
        return index
    with transaction(rt.sessions, write=True) as own:
        (index,) = log.append(own, [record])
        log.sign_head(own)
        return index
