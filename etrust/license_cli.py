"""``etrust license-type``, ``etrust license`` and ``etrust log``: the registry's commands."""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any

from etrust import import_cli, registry_cli
from etrust.cli_io import actor, print_result, write_new
from etrust.licenses import department_signer, license_lifecycle, license_service, status_lists
from etrust.pki import LOG_IDENTITY
from etrust.runtime import Runtime
from license_store.consistency import status_problems
from license_store.holder_codes import HOLDER_CODE_TYPES
from license_store.issuance import Amendment, IssueRequest
from license_store.records import FORMATS, document_of, events_of, license_of, row_by_identifier
from storage.engine import transaction
from trust.clock import system_clock
from trust.errors import MalformedInputError


def _date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise MalformedInputError(f"{flag} is a date: YYYY-MM-DD") from None


def cmd_type_list(rt: Runtime, args: argparse.Namespace) -> int:
    types = license_service(rt).registry.license_types()
    rows = [
        {"code": t.code, "name": t.name, "authority": t.authority, "issuers": issuers}
        for t, issuers in types
    ]
    text = "\n".join(f"{r['code']}  {r['name']}  ({', '.join(r['issuers'])})" for r in rows)
    print_result(args, rows, text or "no license types")
    return 0


def cmd_type_show(rt: Runtime, args: argparse.Namespace) -> int:
    registry = license_service(rt).registry
    found = registry.license_type(args.code).to_dict(registry.issuers(args.code))
    print_result(args, found, json.dumps(found, ensure_ascii=False, indent=2))
    return 0


def cmd_issue(rt: Runtime, args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise MalformedInputError(f"--data is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise MalformedInputError("--data is a JSON object of the license's fields")
    issued = license_service(rt).issue(
        IssueRequest(
            type_code=args.type,
            department=args.department,
            holder_name=args.holder_name,
            holder_code=args.holder_code,
            holder_code_type=args.holder_code_type,
            data=data,
            valid_from=_date(args.valid_from, "--valid-from"),
            license_number=args.number,
        ),
        department_signer(rt, args.department, args.seal),
        actor(),
    )
    lic = issued.license
    print_result(
        args,
        {
            "identifier": lic.identifier,
            "version": lic.version,
            "status": lic.status,
            "log_index": lic.log_index,
            "checkpoint_size": issued.checkpoint.size,
        },
        lic.identifier,
    )
    return 0


def cmd_show(rt: Runtime, args: argparse.Namespace) -> int:
    with transaction(rt.sessions) as session:
        lic = license_of(row_by_identifier(session, args.id))
        events = [e.to_dict() for e in events_of(session, lic.id)]
    shown = {**lic.to_dict(system_clock(), reveal=args.reveal), "events": events}
    text = "\n".join(
        f"{k}: {json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v}"
        for k, v in shown.items()
        if k != "events"
    )
    print_result(args, shown, text)
    return 0


def cmd_export(rt: Runtime, args: argparse.Namespace) -> int:
    with transaction(rt.sessions) as session:
        lic = license_of(row_by_identifier(session, args.id))
        content = document_of(session, lic.id, args.format)
    write_new(args.out, content)
    print_result(
        args,
        {"identifier": lic.identifier, "format": args.format, "out": args.out},
        f"{args.format.upper()} of {lic.identifier} written to {args.out}",
    )
    return 0


def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    with transaction(rt.sessions) as session:
        lic = license_of(row_by_identifier(session, args.id))
    change = license_lifecycle(rt).change(
        lic.identifier,
        args.action,
        args.reason,
        department_signer(rt, lic.department, prefer=lic.seal),
        actor(),
    )
    print_result(
        args,
        {
            "identifier": change.license.identifier,
            "status": change.license.status,
            "log_index": change.log_index,
        },
        f"{change.license.identifier} is {change.license.status}",
    )
    return 0


def cmd_amend(rt: Runtime, args: argparse.Namespace) -> int:
    data = None
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise MalformedInputError(f"--data is not JSON: {exc.msg}") from exc
    with transaction(rt.sessions) as session:
        old = license_of(row_by_identifier(session, args.id))
    issued = license_service(rt).amend(
        old.identifier,
        Amendment(
            reason=args.reason,
            data=data,
            holder_name=args.holder_name,
            license_number=args.number,
            valid_to=_date(args.valid_to, "--valid-to"),
        ),
        department_signer(rt, old.department, args.seal, prefer=old.seal),
        actor(),
    )
    lic = issued.license
    print_result(
        args,
        {"identifier": lic.identifier, "version": lic.version, "previous": old.identifier},
        f"{lic.identifier} (version {lic.version}) supersedes {old.identifier}",
    )
    return 0


def cmd_expire(rt: Runtime, args: argparse.Namespace) -> int:
    changes, failures = license_lifecycle(rt).expire_due(
        lambda department, seal: department_signer(rt, department, prefer=seal), actor()
    )
    lines = [f"{len(changes)} licenses recorded as expired"]
    lines += [f"not expired: {identifier}: {why}" for identifier, why in failures]
    print_result(
        args,
        {
            "expired": [c.license.identifier for c in changes],
            "failed": [{"identifier": i, "error": why} for i, why in failures],
        },
        "\n".join(lines),
    )
    return 1 if failures else 0


def cmd_status_list(rt: Runtime, args: argparse.Namespace) -> int:
    listed = status_lists(rt).current()
    write_new(args.out, listed.to_json())
    print_result(
        args,
        {"number": listed.number, "out": args.out},
        f"status list {listed.number} written to {args.out}",
    )
    return 0


def cmd_qr(rt: Runtime, args: argparse.Namespace) -> int:
    from signing.qr import qr_symbol

    with transaction(rt.sessions) as session:
        lic = license_of(row_by_identifier(session, args.id))
    text = license_service(rt).qr_text(lic.qr_payload)
    symbol = qr_symbol(text, level="M", scale=args.scale)
    write_new(args.out, symbol.png)
    print_result(
        args,
        {"identifier": lic.identifier, "out": args.out, "qr_version": symbol.version, "text": text},
        f"QR code of {lic.identifier} (version {symbol.version}) written to {args.out}",
    )
    return 0


def cmd_trust_list(rt: Runtime, args: argparse.Namespace) -> int:
    from etrust.verification import trust_list_bytes
    from verify_app.trust_list import read_trust_list

    data = trust_list_bytes(rt)
    listed = read_trust_list(data, anchors=None)
    write_new(args.out, data)
    print_result(
        args,
        {"number": listed.number, "qr_keys": len(listed.qr_keys), "out": args.out},
        f"trust list {listed.number} ({len(listed.qr_keys)} QR keys) written to {args.out}",
    )
    return 0


def cmd_purge(rt: Runtime, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from verify_app.retention import purge

    if args.checks_days < 30 or args.presentations_days < 1:
        raise MalformedInputError("keep checks at least 30 days and presentations at least 1")
    checks, presentations = purge(
        rt.sessions,
        system_clock(),
        checks_kept=timedelta(days=args.checks_days),
        presentations_kept=timedelta(days=args.presentations_days),
    )
    print_result(
        args,
        {"checks": checks, "presentations": presentations},
        f"removed {checks} check records and {presentations} presentation codes",
    )
    return 0


def cmd_log_verify(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identities.get(LOG_IDENTITY)
    keys = [rt.keys.find(identity.key_uri).public_key_info] if identity else []
    log = license_service(rt).log
    problems = log.verify(keys) + status_problems(rt.sessions)
    size = log.size()
    print_result(
        args,
        {"consistent": not problems, "size": size, "problems": problems},
        "\n".join(problems) if problems else f"the log is consistent ({size} entries)",
    )
    return 1 if problems else 0


def add_commands(sub: Any, command: Any) -> None:
    types = sub.add_parser("license-type", help="license types").add_subparsers(
        dest="license_type_command", required=True
    )
    command("list", cmd_type_list, "license types and their issuing departments", types)
    registry_cli.add_commands(sub, command, types)
    p = command("show", cmd_type_show, "a license type with its schema and an example", types)
    p.add_argument("code")

    lic = sub.add_parser("license", help="e-licenses (电子证照)").add_subparsers(
        dest="license_command", required=True
    )
    p = command("issue", cmd_issue, "issue a license: sealed OFD and PDF, logged", lic)
    p.add_argument("--type", required=True, help="the license type code (21 characters)")
    p.add_argument("--department", required=True, help="the issuing department's code")
    p.add_argument("--holder-name", required=True)
    p.add_argument("--holder-code", required=True, help="ID number, USCC, ...")
    p.add_argument(
        "--holder-code-type",
        default="111",
        choices=sorted(HOLDER_CODE_TYPES),
        help="GB/T 36903: 111 resident ID, 001 USCC, ...",
    )
    p.add_argument("--data", default="{}", help="the license's fields as a JSON object")
    p.add_argument("--valid-from", help="YYYY-MM-DD (default: today)")
    p.add_argument("--number", help="the number printed on the license (证照编号)")
    p.add_argument("--seal", help="the seal to use (default: the department's SM2 seal)")
    p = command("show", cmd_show, "a license: fields, status, version, events", lic)
    p.add_argument("id", help="the identifier (or its lineage, for the newest version)")
    p.add_argument("--reveal", action="store_true", help="show holder data unmasked")
    p = command("export", cmd_export, "write a license's sealed OFD or PDF", lic)
    p.add_argument("id")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", required=True)
    for action, help_ in (
        ("revoke", "revoke a license (final)"),
        ("suspend", "suspend a license"),
        ("resume", "resume a suspended license"),
    ):
        p = command(action, cmd_status, help_, lic)
        p.add_argument("id")
        p.add_argument("--reason", required=True)
        p.set_defaults(action=action)
    p = command("amend", cmd_amend, "a new version of a license (the old one superseded)", lic)
    p.add_argument("id")
    p.add_argument("--reason", required=True)
    p.add_argument("--data", help="all the license's fields as a JSON object (replaces them)")
    p.add_argument("--holder-name")
    p.add_argument("--number")
    p.add_argument("--valid-to", help="YYYY-MM-DD: a new end of validity")
    p.add_argument("--seal", help="the seal to use (default: the department's SM2 seal)")
    command(
        "expire",
        cmd_expire,
        "record the expiry of licenses past their validity (run daily, e.g. from cron)",
        lic,
    )
    p = command("qr", cmd_qr, "write a license's QR code as a PNG", lic)
    p.add_argument("id")
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=int, default=8, help="pixels per module (default 8)")
    checks = sub.add_parser("checks", help="records of verification").add_subparsers(
        dest="checks_command", required=True
    )
    p = command("purge", cmd_purge, "remove old check records and spent presentation codes", checks)
    p.add_argument("--checks-days", type=int, default=3 * 365)
    p.add_argument("--presentations-days", type=int, default=1)
    trust_list = sub.add_parser("trust-list", help="the signed trust list").add_subparsers(
        dest="trust_list_command", required=True
    )
    p = command("export", cmd_trust_list, "write the signed trust list", trust_list)
    p.add_argument("--out", required=True)
    p = command("status-list", cmd_status_list, "write the signed status list", lic)
    p.add_argument("--out", required=True)
    import_cli.add_commands(lic, command)

    log = sub.add_parser("log", help="the license transparency log").add_subparsers(
        dest="log_command", required=True
    )
    command("verify", cmd_log_verify, "check the whole log against its checkpoints", log)
