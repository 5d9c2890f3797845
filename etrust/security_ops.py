"""What security officers do, whether they type a command on the CA host or call the API.

One code path for both front ends, so dual control, state checks and audit records cannot
drift apart between them. Each operation records its success in the audit log; the front end
records failures (the CLI in ``main``, the API around each route).
"""

from __future__ import annotations

import hashlib
from typing import Any

from asn1crypto import keys

from etrust import ceremony
from etrust.approvals import ApprovalRequest
from etrust.audit import AuditEvent, Outcome
from etrust.lifecycle import TRANSITIONS, ManagedKey, revoke_key
from etrust.runtime import Runtime
from trust.errors import ApprovalRequiredError, KeyStateError, MalformedInputError
from trust.keys import KeyUri

KEY_ACTIONS = {
    "active": "activate",
    "suspended": "suspend",
    "rotated": "rotate",
    "revoked": "revoke",
    "destroyed": "destroy",
}
"""A key state and the audit action (``key.<verb>``) that puts a key into it."""


def approve_if_required(
    rt: Runtime, operation: str, target: str, params: dict[str, Any], approval: str | None
) -> ApprovalRequest | None:
    """Spend approval request ``approval`` on this operation when dual control covers it;
    returns the spent request (None when no approval is needed)."""
    needed = rt.dual_control.required(operation)
    if needed == 0:
        return None
    if approval is None:
        raise ApprovalRequiredError(
            f"{operation} needs {needed} approvals: etrust approval request {operation} {target} "
            + " ".join(f"--param {k}={v}" for k, v in params.items())
            + " --as OFFICER (or POST /api/v1/approvals), then pass the request id as approval"
        )
    return rt.dual_control.authorize(approval, operation, target, params)


def officer_params(public: keys.PublicKeyInfo) -> dict[str, str]:
    """What an approval of ``officer.add`` is bound to: the new officer's public key."""
    return {"public_key_sha256": hashlib.sha256(public.dump()).hexdigest()}


def register_officer(
    rt: Runtime, actor: str, name: str, public: keys.PublicKeyInfo, approval: str | None
) -> None:
    """Register a security officer's approval key.

    New officers are approved by existing ones once there are more of them than the approvals
    needed (a requester plus m others); before that the first officers are being set up.
    Otherwise one officer could register a second identity and approve alone.
    """
    dc = rt.dual_control
    if dc.required("officer.add") and len(dc.officers()) > dc.required("officer.add"):
        approve_if_required(rt, "officer.add", name, officer_params(public), approval)
    dc.add_officer(name, public)
    rt.record(AuditEvent(actor, "officer.add", name, detail=officer_params(public)))


def request_approval(
    rt: Runtime,
    actor: str,
    operation: str,
    target: str,
    params: dict[str, str],
    requester: str,
) -> ApprovalRequest:
    request = rt.dual_control.request(operation, target, params, requester=requester)
    rt.record(
        AuditEvent(
            actor,
            "approval.request",
            request.id,
            request_hash=request.request_hash,
            detail={"operation": operation, "target": target, "requester": requester},
        )
    )
    return request


def change_key_state(
    rt: Runtime,
    actor: str,
    name: str,
    state: str,
    reason: str,
    *,
    successor: str | None = None,
    revocation_reason: str = "key_compromise",
    confirm: str | None = None,
    approval: str | None = None,
) -> ManagedKey:
    """Move a managed key to ``state``; destroying it needs its name again as confirmation."""
    life = rt.lifecycle
    if state == "rotated":
        if not successor:
            raise MalformedInputError("rotating a key needs its successor's name")
        key = life.rotate(name, successor, actor, reason)
    elif state == "revoked":
        key = revoke_key(life, rt.pki(), name, actor, reason, revocation_reason)
    elif state == "destroyed":
        if confirm != name:
            raise MalformedInputError(
                f"destroying a key needs its name again as confirmation: --confirm {name} "
                f'(API: "confirm": "{name}")'
            )
        current = life.get(name)
        if "destroyed" not in TRANSITIONS[current.state]:  # before an approval is spent
            raise KeyStateError(f"key {name} is {current.state}; rotate or revoke it first")
        spent = approve_if_required(rt, "key.destroy", name, {"key_uri": current.key_uri}, approval)
        try:
            rt.keys.backend(KeyUri.parse(current.key_uri).scheme).destroy(current.key_uri)
        except Exception:
            if spent is not None:  # the key is still there: the approval may be used again
                rt.dual_control.release(spent.id)
            raise
        key = life.transition(name, "destroyed", actor, reason)
    elif state in KEY_ACTIONS:
        key = life.transition(name, state, actor, reason)
    else:
        raise MalformedInputError(f"a key cannot be put into state {state!r}")
    rt.record(
        AuditEvent(
            actor,
            f"key.{KEY_ACTIONS[state]}",
            name,
            key.key_uri,
            detail={"state": key.state, "reason": reason},
        )
    )
    return key


def run_ceremony(rt: Runtime, actor: str, text: bytes, approval: str | None) -> dict[str, Any]:
    """Run a ceremony file; returns the signed transcript document (also when a step failed
    and what was done was undone: its outcome says so)."""
    parsed = ceremony.parse(text)
    approve_if_required(rt, "ceremony.run", parsed.name, {"file_sm3": parsed.file_hash}, approval)
    document = ceremony.run(
        parsed,
        pki=rt.pki(),
        keys=rt.keys,
        lifecycle=rt.lifecycle,
        officers=rt.dual_control.officers(),
        actor=actor,
        signer=rt.audit_signer,
    )
    transcript = document["transcript"]
    outcome: Outcome = "success" if transcript["outcome"] == "completed" else "failure"
    rt.record(
        AuditEvent(
            actor,
            "ceremony.run",
            parsed.name,
            None,
            parsed.file_hash,
            outcome,
            {"steps": len(transcript["steps"]), "outcome": transcript["outcome"]},
        )
    )
    return document
