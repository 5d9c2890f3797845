"""The ``etrust`` command line. Its forms are a public interface: keep them stable.

Exit codes: 0 success; 1 failure (for ``verify``: invalid); 2 cannot decide (``verify``) or usage.
Errors print ``error CODE: message`` on stderr (or a JSON object with ``--json``), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from asn1crypto import keys

from etrust import ceremony, consent_cli, devices, license_cli, seal_cli
from etrust import security_ops as ops
from etrust.audit import AuditEvent
from etrust.cli_io import actor, print_result, read_file
from etrust.pki import init_pki
from etrust.runtime import Runtime, open_runtime
from etrust.settings import load_settings
from trust.ca import describe_name
from trust.certificates import parse_serial, to_pem, unarmor
from trust.errors import EtrustError, MalformedInputError
from trust.profiles import PROFILES
from trust.repository import REVOCATION_REASONS

Handler = Callable[[Runtime, argparse.Namespace], int]


def _audit(
    rt: Runtime,
    action: str,
    target: str | None = None,
    *,
    key_uri: str | None = None,
    request_hash: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    rt.record(AuditEvent(actor(), action, target, key_uri, request_hash, "success", detail or {}))


def _write_output(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(path).write_bytes(data)


def _cmd_init(rt: Runtime, args: argparse.Namespace) -> int:
    created = init_pki(
        rt.settings,
        rt.records,
        rt.identities,
        rt.repository,
        rt.keys,
        key_uris=_key_uris(args.key_uri),
    )
    if args.demo:
        from etrust.demo import seed_demo

        created += seed_demo(rt)
    if created:
        _audit(rt, "init", str(rt.settings.home), detail={"created": created})
    names = [r.name for r in rt.records.list()]
    print_result(
        args,
        {"home": str(rt.settings.home), "created": created, "cas": names},
        f"home {rt.settings.home}: "
        + (f"created {', '.join(created)}" if created else "already initialised, nothing to do"),
    )
    return 0


def _key_uris(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, eq, uri = pair.partition("=")
        if not eq or not uri:
            raise MalformedInputError(
                "--key-uri takes NAME=URI, e.g. issuing-rsa=pkcs11:token=ca;object=issuing-rsa"
            )
        out[name] = uri
    return out


def _cmd_device_probe(rt: Runtime | None, args: argparse.Namespace) -> int:
    """Always JSON: what a device offers is a nested structure, best read as such."""
    modules = load_settings(args.home).device_modules
    print(json.dumps(devices.probe(args.uri, modules), ensure_ascii=False, indent=2, default=str))
    return 0


def _cmd_ca_list(rt: Runtime, args: argparse.Namespace) -> int:
    pki = rt.pki()
    rows = []
    for name, ca in pki.cas.items():
        cert = ca.certificate
        rows.append(
            {
                "name": name,
                "algorithm": ca.signature_algorithm.name,
                "subject": describe_name(cert.subject),
                "serial": format(cert.serial_number, "x"),
                "not_after": cert.not_valid_after.isoformat(),
                "key_uri": ca.key.key_uri,
            }
        )
    text = "\n".join(
        f"{r['name']:<12} {r['algorithm']:<18} {r['not_after'][:10]}  {r['subject']}" for r in rows
    )
    print_result(args, {"cas": rows}, text or "no CAs: run etrust init")
    return 0


def _cmd_ca_export(rt: Runtime, args: argparse.Namespace) -> int:
    cert = rt.pki().ca(args.name).certificate
    _write_output(args.out, to_pem(cert) if args.format == "pem" else cert.dump())
    return 0


def _cmd_cert_issue(rt: Runtime, args: argparse.Namespace) -> int:
    ca = rt.pki().ca(args.ca)
    csr = read_file(args.csr)
    _require_approval(rt, ca.name, args.profile, csr, args.approval)
    cert = ca.issue_from_csr(csr, args.profile, sm2_id=args.sm2_id.encode())
    _audit(
        rt,
        "cert.issue",
        f"{ca.name}/{cert.serial_number:x}",
        key_uri=ca.key.key_uri,
        request_hash=hashlib.sha256(csr).hexdigest(),
        detail={"profile": args.profile},
    )
    _write_output(args.out, to_pem(cert))
    if args.out != "-":
        print_result(
            args,
            {
                "serial": format(cert.serial_number, "x"),
                "subject": describe_name(cert.subject),
                "ca": ca.name,
            },
            f"issued {cert.serial_number:x} to {describe_name(cert.subject)} -> {args.out}",
        )
    return 0


def _issue_operation(rt: Runtime, ca_name: str, profile: str) -> str | None:
    """The dual-controlled operation an issuance is, if the policy puts one under control."""
    candidates = []
    if rt.pki().parents.get(ca_name) is None:
        candidates.append("ca.issue.root")
    if profile in ("issuing-ca", "registry-publisher"):  # both vouch for what others trust
        candidates.append("ca.issue.ca")
    return next((op for op in candidates if rt.dual_control.required(op) > 0), None)


def _issue_params(profile: str, csr: bytes) -> dict[str, str]:
    return {"profile": profile, "csr_sha256": hashlib.sha256(csr).hexdigest()}


def _require_approval(
    rt: Runtime, ca_name: str, profile: str, csr: bytes, approval: str | None
) -> None:
    operation = _issue_operation(rt, ca_name, profile)
    if operation is not None:
        ops.approve_if_required(rt, operation, ca_name, _issue_params(profile, csr), approval)


def _cmd_officer_add(rt: Runtime, args: argparse.Namespace) -> int:
    if args.key_uri:
        public = rt.keys.find(args.key_uri).public_key_info
    else:
        public = keys.PublicKeyInfo.load(
            unarmor(read_file(args.public_key), "public key", ("PUBLIC KEY",))
        )
    ops.register_officer(rt, actor(), args.name, public, args.approval)
    print_result(args, {"officer": args.name}, f"security officer {args.name} registered")
    return 0


def _cmd_officer_disable(rt: Runtime, args: argparse.Namespace) -> int:
    rt.dual_control.disable_officer(args.name)
    _audit(rt, "officer.disable", args.name, detail={"reason": args.reason})
    print_result(
        args, {"officer": args.name, "disabled": True}, f"security officer {args.name} disabled"
    )
    return 0


def _cmd_approval_request(rt: Runtime, args: argparse.Namespace) -> int:
    params = dict(p.split("=", 1) for p in args.param if "=" in p)
    if args.csr:
        params.update(_issue_params(args.profile or "", read_file(args.csr)))
    request = ops.request_approval(
        rt, actor(), args.operation, args.target, params, requester=args.officer
    )
    print_result(
        args,
        {
            "id": request.id,
            "required": request.required,
            "expires_at": request.expires_at,
            "request_hash": request.request_hash,
        },
        f"approval request {request.id}: {args.operation} on {args.target} needs {request.required} "
        f"approvals by {request.expires_at.isoformat()}",
    )
    return 0


def _cmd_approval_sign(rt: Runtime, args: argparse.Namespace) -> int:
    count = rt.dual_control.approve(args.id, args.officer, key := rt.keys.find(args.key_uri))
    request = rt.dual_control.get(args.id)
    _audit(rt, "approval.sign", args.id, key_uri=key.key_uri, detail={"officer": args.officer})
    print_result(
        args,
        {"id": args.id, "approvals": count, "required": request.required},
        f"approved {args.id} as {args.officer}: {count} of {request.required}",
    )
    return 0


def _cmd_cert_revoke(rt: Runtime, args: argparse.Namespace) -> int:
    serial = parse_serial(args.serial)
    pki = rt.pki()
    ca = pki.ca(args.ca) if args.ca else pki.find_issuer_of_serial(serial)
    rev = ca.revoke(serial, args.reason)
    _audit(rt, "cert.revoke", f"{ca.name}/{serial:x}", detail={"reason": rev.reason})
    print_result(
        args,
        {
            "serial": format(serial, "x"),
            "ca": ca.name,
            "reason": rev.reason,
            "revoked_at": rev.revoked_at,
        },
        f"revoked {serial:x} ({rev.reason}) at {rev.revoked_at.isoformat()}",
    )
    return 0


def _cmd_crl(rt: Runtime, args: argparse.Namespace) -> int:
    ca = rt.pki().ca(args.ca)
    crl = ca.crl()
    _audit(
        rt,
        "crl.sign",
        ca.name,
        key_uri=ca.key.key_uri,
        detail={"number": crl.crl_number_value.native},
    )
    _write_output(args.out, to_pem(crl, "X509 CRL") if args.format == "pem" else crl.dump())
    return 0


def _cmd_verify(rt: Runtime | None, args: argparse.Namespace) -> int:
    from etrust.verify_cli import run_verify

    return run_verify(rt, args)


def _cmd_client_create(rt: Runtime, args: argparse.Namespace) -> int:
    token = rt.clients.create(args.name, args.role, department=args.department)
    _audit(
        rt, "client.create", args.name, detail={"role": args.role, "department": args.department}
    )
    print_result(
        args,
        {"name": args.name, "role": args.role, "department": args.department, "token": token},
        f"API client {args.name} ({args.role}) created. Its token is shown once; keep it safe:\n{token}",
    )
    return 0


def _cmd_audit_verify(rt: Runtime, args: argparse.Namespace) -> int:
    anchors = []
    for path in args.anchor:
        try:
            anchors.append(json.loads(read_file(path)))
        except ValueError as exc:
            raise MalformedInputError(f"{path} is not JSON") from exc
    result = rt.audit.verify(rt.audit_keys(), anchors)
    data = dataclasses.asdict(result)
    text = (
        f"audit log intact: {result.records} records, {result.checkpoints} signed checkpoints"
        if result.intact
        else f"audit log BROKEN at record {result.first_broken}: {result.reason}"
    )
    print_result(args, data, text)
    return 0 if result.intact else 1


def _cmd_audit_checkpoint(rt: Runtime, args: argparse.Namespace) -> int:
    exported = rt.audit.checkpoint()
    if args.out:
        Path(args.out).write_text(json.dumps(exported, indent=2), "utf-8")
    last = exported["last_id"]
    print_result(args, {"checkpoint_at_record": last}, f"signed checkpoint at record {last}")
    return 0


def _cmd_audit_list(rt: Runtime, args: argparse.Namespace) -> int:
    if not (0 <= args.after < 1 << 62 and 1 <= args.limit <= 10_000):
        raise MalformedInputError("--after is a record id and --limit 1-10000")
    records = rt.audit.records(after=args.after, limit=args.limit)
    rows = [r.to_dict() for r in records]
    text = "\n".join(
        f"{r.id:>6} {r.at:%Y-%m-%d %H:%M:%S} {r.event.actor:<20} {r.event.action:<14} "
        f"{r.event.outcome:<8} {r.event.target or ''}"
        for r in records
    )
    print_result(args, {"records": rows}, text or "no records")
    return 0


def _cmd_ceremony_run(rt: Runtime, args: argparse.Namespace) -> int:
    text = read_file(args.file)
    out = Path(args.out)
    if not out.parent.is_dir() or out.exists():
        raise MalformedInputError(f"--out must name a new file in an existing folder: {out}")
    document = ops.run_ceremony(rt, actor(), text, args.approval)
    transcript = document["transcript"]
    out.write_text(json.dumps(document, ensure_ascii=False, indent=2), "utf-8")
    print_result(
        args,
        {
            "outcome": transcript["outcome"],
            "transcript": args.out,
            "steps": len(transcript["steps"]),
        },
        f"ceremony {transcript['ceremony']}: {transcript['outcome']}, {len(transcript['steps'])} steps, transcript in {args.out}",
    )
    return 0 if transcript["outcome"] == "completed" else 1


def _cmd_ceremony_verify(rt: Runtime, args: argparse.Namespace) -> int:
    try:
        document = json.loads(read_file(args.transcript))
    except ValueError as exc:
        raise MalformedInputError(f"{args.transcript} is not JSON") from exc
    transcript = ceremony.verify_transcript(document, rt.audit_keys())
    print_result(
        args,
        {"valid": True, "ceremony": transcript["ceremony"], "outcome": transcript["outcome"]},
        f"transcript of {transcript['ceremony']} verifies ({transcript['outcome']})",
    )
    return 0


def _cmd_key_list(rt: Runtime, args: argparse.Namespace) -> int:
    rows = [
        {
            "name": k.name,
            "purpose": k.purpose,
            "type": k.key_type,
            "state": k.state,
            "key_uri": k.key_uri,
            "ca": k.ca_name,
            "replaced_by": k.replaced_by,
        }
        for k in rt.lifecycle.list()
    ]
    text = "\n".join(
        f"{r['name']:<24} {r['purpose']:<8} {r['type']:<8} {r['state']:<10} {r['key_uri']}"
        for r in rows
    )
    print_result(args, {"keys": rows}, text or "no managed keys")
    return 0


def _cmd_key_change(rt: Runtime, args: argparse.Namespace) -> int:
    key = ops.change_key_state(
        rt,
        actor(),
        args.name,
        args.state,
        args.reason,
        successor=getattr(args, "successor", None),
        revocation_reason=getattr(args, "revocation_reason", "key_compromise"),
        confirm=getattr(args, "confirm", None),
        approval=getattr(args, "approval", None),
    )
    print_result(args, {"name": key.name, "state": key.state}, f"key {key.name} is now {key.state}")
    return 0


def _cmd_serve(rt: Runtime, args: argparse.Namespace) -> int:
    """Serve with uvicorn; several workers each build their own app from ETRUST_HOME."""
    import os

    import uvicorn

    rt.close()
    os.environ["ETRUST_HOME"] = str(rt.settings.home)
    uvicorn.run(
        "etrust.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=False,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etrust", description="etrust: SM2/RSA PKI for e-licenses and e-seals"
    )
    parser.add_argument("--home", help="home folder (default: $ETRUST_HOME or ./var)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Handler, help_: str, parent: Any = sub
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    p = command("init", _cmd_init, "create the SM2 and RSA CA hierarchies (idempotent)")
    p.add_argument(
        "--demo", action="store_true", help="also create demo certificates and an API client"
    )
    p.add_argument(
        "--key-uri",
        action="append",
        default=[],
        metavar="NAME=URI",
        help="put CA NAME's key on a device (pkcs11:, skf:, sdf:); repeatable",
    )

    device = sub.add_parser("device", help="signing hardware").add_subparsers(
        dest="device_command", required=True
    )
    p = command(
        "probe", _cmd_device_probe, "what a PKCS#11 token, SKF key or SDF card offers", device
    )
    p.add_argument("uri")

    ca = sub.add_parser("ca", help="certificate authorities").add_subparsers(
        dest="ca_command", required=True
    )
    command("list", _cmd_ca_list, "list the CAs", ca)
    p = command("export", _cmd_ca_export, "write a CA certificate", ca)
    p.add_argument("name")
    p.add_argument("--out", required=True, help="file, or - for standard output")
    p.add_argument("--format", choices=("pem", "der"), default="pem")

    cert = sub.add_parser("cert", help="certificates").add_subparsers(
        dest="cert_command", required=True
    )
    p = command("issue", _cmd_cert_issue, "issue a certificate from a PKCS#10 request", cert)
    p.add_argument("--ca", required=True)
    p.add_argument("--profile", required=True, choices=[n for n in PROFILES if n != "root-ca"])
    p.add_argument("--csr", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--sm2-id", default="1234567812345678", help="SM2 distinguishing ID of the request"
    )
    p.add_argument("--approval", help="approval request id, where dual control applies")
    p = command("revoke", _cmd_cert_revoke, "revoke a certificate", cert)
    p.add_argument("serial", help="serial number in hex")
    p.add_argument(
        "--reason",
        default="unspecified",
        choices=[r for r in REVOCATION_REASONS if r != "remove_from_crl"],
    )
    p.add_argument("--ca", help="issuing CA (found from the serial when omitted)")

    p = command("crl", _cmd_crl, "write a freshly signed CRL")
    p.add_argument("--ca", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=("pem", "der"), default="der")

    p = command(
        "verify",
        _cmd_verify,
        "verify a signed document (OFD, PDF, .esl, SignedValue.dat, CMS), a certificate, a CRL, "
        "a license code (--code TEXT) or a photo of one",
    )
    p.add_argument("file", nargs="?")
    p.add_argument("--code", help="a license code as a scanner types it (the URL or its fragment)")
    p.add_argument(
        "--offline",
        action="store_true",
        help="check a license code with --trust-list (and --status-list) only, no home",
    )
    p.add_argument("--trust-list", help="a signed trust list (etrust trust-list export)")
    p.add_argument("--status-list", help="a signed status list (etrust license status-list)")
    p.add_argument("--holder-code", help="the ID number on the holder's card, to match the code")
    p.add_argument(
        "--content",
        help="the file a detached signature (CMS, SES) signs (default: FILE minus .p7s)",
    )
    p.add_argument(
        "--trust", action="append", default=[], help="trust anchor certificate (repeatable)"
    )
    p.add_argument(
        "--untrusted", action="append", default=[], help="intermediate certificate (repeatable)"
    )
    p.add_argument(
        "--crl", action="append", default=[], help="CRL to use for revocation (repeatable)"
    )
    p.add_argument("--at", type=_iso_time, help="validate at this ISO 8601 time (default: now)")
    p.add_argument(
        "--revocation",
        choices=("require", "soft-fail", "none"),
        default="require",
        help="require revocation data for every certificate below the root (default), use what "
        "is given (soft-fail), or skip the check",
    )

    seal_cli.add_commands(sub, command)
    license_cli.add_commands(sub, command)
    consent_cli.add_commands(sub, command)

    client = sub.add_parser("client", help="API clients").add_subparsers(
        dest="client_command", required=True
    )
    p = command(
        "create", _cmd_client_create, "create an API client and print its token once", client
    )
    p.add_argument("name")
    p.add_argument("--role", required=True)
    p.add_argument("--department")

    officer = sub.add_parser("officer", help="security officers").add_subparsers(
        dest="officer_command", required=True
    )
    p = command("add", _cmd_officer_add, "register a security officer's approval key", officer)
    p.add_argument("name")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--key-uri", help="the officer's key (software or USB key)")
    group.add_argument("--public-key", help="the officer's public key, PEM")
    p.add_argument(
        "--approval", help="approval request id, where officer.add is under dual control"
    )
    p = command("disable", _cmd_officer_disable, "stop an officer's approvals counting", officer)
    p.add_argument("name")
    p.add_argument("--reason", required=True)

    approval = sub.add_parser("approval", help="dual control").add_subparsers(
        dest="approval_command", required=True
    )
    p = command("request", _cmd_approval_request, "ask for approvals of an operation", approval)
    p.add_argument("operation")
    p.add_argument("target", help="what the operation acts on, e.g. the CA name")
    p.add_argument("--as", dest="officer", required=True, help="the requesting officer")
    p.add_argument("--param", action="append", default=[], help="K=V bound into the request")
    p.add_argument("--csr", help="for certificate issuance: the request to be signed")
    p.add_argument("--profile", help="for certificate issuance: the profile")
    p = command("sign", _cmd_approval_sign, "approve a request with your own key", approval)
    p.add_argument("id")
    p.add_argument("--as", dest="officer", required=True)
    p.add_argument("--key-uri", required=True)

    cer = sub.add_parser("ceremony", help="key ceremonies").add_subparsers(
        dest="ceremony_command", required=True
    )
    p = command(
        "run", _cmd_ceremony_run, "run a ceremony file and write its signed transcript", cer
    )
    p.add_argument("file")
    p.add_argument("--out", required=True, help="where to write the transcript (JSON)")
    p.add_argument("--approval", help="approval request id, where dual control applies")
    p = command("verify", _cmd_ceremony_verify, "check a transcript's signature", cer)
    p.add_argument("transcript")

    key = sub.add_parser("key", help="managed keys").add_subparsers(
        dest="key_command", required=True
    )
    command("list", _cmd_key_list, "managed keys and their states", key)
    for name, state, help_ in (
        ("activate", "active", "put a certified or suspended key into service"),
        ("suspend", "suspended", "take a key out of service for now"),
        ("revoke", "revoked", "revoke a key (and its certificate: CRL and OCSP follow)"),
        ("destroy", "destroyed", "destroy a rotated or revoked key on its backend"),
        ("rotate", "rotated", "retire a key in favour of its certified successor"),
    ):
        p = command(name, _cmd_key_change, help_, key)
        p.set_defaults(state=state, command_name=name)
        p.add_argument("name")
        p.add_argument("--reason", required=True, help="why (recorded with who and when)")
        if name == "rotate":
            p.add_argument("--successor", required=True)
        if name == "revoke":
            p.add_argument(
                "--revocation-reason",
                default="key_compromise",
                choices=[r for r in REVOCATION_REASONS if r != "remove_from_crl"],
            )
        if name == "destroy":
            p.add_argument("--confirm", help="the key's name again")
            p.add_argument("--approval", help="approval request id, where dual control applies")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    p = command(
        "verify",
        _cmd_audit_verify,
        "check the hash chain and signed checkpoints (exit 1 if broken)",
        audit,
    )
    p.add_argument(
        "--anchor",
        action="append",
        default=[],
        help="a checkpoint exported earlier and kept elsewhere",
    )
    p = command("checkpoint", _cmd_audit_checkpoint, "sign the log's current head now", audit)
    p.add_argument(
        "--out", help="also write the signed checkpoint here, to keep outside the database"
    )
    p = command("list", _cmd_audit_list, "show audit records", audit)
    p.add_argument("--after", type=int, default=0, help="records after this id")
    p.add_argument("--limit", type=int, default=50)

    p = command("serve", _cmd_serve, "serve the web app and the PKI endpoints")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    return parser


def _iso_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-01-01T00:00:00+08:00")
    return moment


_AUDITED: dict[Handler, str] = {
    _cmd_init: "init",
    _cmd_cert_issue: "cert.issue",
    _cmd_cert_revoke: "cert.revoke",
    _cmd_crl: "crl.sign",
    _cmd_client_create: "client.create",
    _cmd_officer_add: "officer.add",
    _cmd_officer_disable: "officer.disable",
    _cmd_approval_request: "approval.request",
    _cmd_approval_sign: "approval.sign",
    _cmd_ceremony_run: "ceremony.run",
    _cmd_key_change: "key.change",
    seal_cli.cmd_seal_create: "seal.make",
    seal_cli.cmd_sign: "seal.sign",
}
"""Commands whose failures are audited too (their successes record themselves)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    failure_code = 2 if args.handler is _cmd_verify else 1
    rt: Runtime | None = None
    try:
        settings = load_settings(args.home)
        # verify --trust needs no home (nor its keys); init is the one command that creates one.
        offline = args.handler is _cmd_verify and (args.trust or args.offline)
        if not (offline or args.handler is _cmd_device_probe):
            rt = open_runtime(settings, create=args.handler is _cmd_init)
        code: int = args.handler(rt, args)
        return code
    except EtrustError as exc:
        action = _AUDITED.get(args.handler)
        if rt is not None and action is not None:
            failure = AuditEvent(actor(), action, None, None, None, "failure", {"error": exc.code})
            with contextlib.suppress(EtrustError):  # the failure is reported either way
                rt.record(failure)
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.code, "message": exc.message}, ensure_ascii=False))
        else:
            print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return failure_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): nothing more to tell it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return failure_code
    except Exception as exc:  # a bug or an unforeseen library error: a message, not a traceback
        logging.getLogger("etrust.cli").debug("unexpected error", exc_info=True)
        action = _AUDITED.get(args.handler)
        if rt is not None and action is not None:
            with contextlib.suppress(Exception):
                rt.record(
                    AuditEvent(actor(), action, None, None, None, "failure", {"error": "INTERNAL"})
                )
        message = f"unexpected {type(exc).__name__}; nothing more is shown (set ETRUST_DEBUG=1 for details)"
        if os.environ.get("ETRUST_DEBUG"):
            raise
        if getattr(args, "json", False):
            print(json.dumps({"error": "INTERNAL", "message": message}))
        else:
            print(f"error INTERNAL: {message}", file=sys.stderr)
        return failure_code
    finally:
        if rt is not None:
            rt.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
