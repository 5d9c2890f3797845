"""``etrust department add|list`` and ``etrust license-type define|export``: the registry's
set-up (the checks and the audit records are in :mod:`etrust.registry_ops`, shared with the
admin API)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from etrust import registry_ops
from etrust.cli_io import actor, print_result, write_new
from etrust.runtime import Runtime


def cmd_department_add(rt: Runtime, args: argparse.Namespace) -> int:
    change = registry_ops.put_department(rt, actor(), args.code, args.name, args.uscc, args.area)
    dept = change.department
    if change.created:
        text = f"department {dept.code} ({dept.name}, USCC {dept.uscc}) added"
    elif change.changed:
        text = f"department {dept.code}: {', '.join(change.changed)} changed"
    else:
        text = f"department {dept.code} unchanged"
    print_result(args, change.to_dict(), text)
    return 0


def cmd_department_list(rt: Runtime, args: argparse.Namespace) -> int:
    found = registry_ops.departments(rt)
    text = "\n".join(f"{d.code}  {d.name}  {d.uscc}  {d.area_code}" for d in found)
    print_result(args, [d.to_dict() for d in found], text or "no departments")
    return 0


def cmd_type_define(rt: Runtime, args: argparse.Namespace) -> int:
    definition = registry_ops.read_definition(args.file)
    change = registry_ops.define_type(rt, actor(), definition, args.issuer)
    t = change.license_type
    if change.created:
        text = f"license type {t.code} ({t.name}) defined; issuers: {', '.join(change.issuers)}"
    elif change.changed:
        text = f"license type {t.code} redefined: {', '.join(change.changed)} changed"
    else:
        text = f"license type {t.code} unchanged"
    print_result(args, change.to_dict(), text)
    return 0


def cmd_type_export(rt: Runtime, args: argparse.Namespace) -> int:
    definition = registry_ops.export_type(rt, args.code)
    content = json.dumps(definition, ensure_ascii=False, indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(content)
        return 0
    write_new(args.out, content.encode("utf-8"))
    print_result(
        args,
        {"code": args.code, "out": args.out},
        f"license type {args.code} written to {args.out}",
    )
    return 0


def add_commands(sub: Any, command: Any, license_type_commands: Any) -> None:
    """Register the department commands and ``license-type define|export``."""
    departments = sub.add_parser(
        "department", help="departments that issue licenses (发证部门)"
    ).add_subparsers(dest="department_command", required=True)
    p = command(
        "add",
        cmd_department_add,
        "add a department, or change its name or area (its USCC only before it issues)",
        departments,
    )
    p.add_argument("code", help="the department's code in this home, e.g. 150100-scjg")
    p.add_argument("--name", required=True, help="its full name, as printed on its licenses")
    p.add_argument("--uscc", required=True, help="its unified social credit code (GB 32100)")
    p.add_argument("--area", required=True, help="its 6-digit area code (GB/T 2260)")
    command("list", cmd_department_list, "the departments", departments)

    p = command(
        "define",
        cmd_type_define,
        "define a license type from a JSON file, or redefine one (see docs/license-types.md)",
        license_type_commands,
    )
    p.add_argument("file", help="the type definition (JSON)")
    p.add_argument(
        "--issuer",
        action="append",
        required=True,
        metavar="DEPARTMENT",
        help="a department that issues licenses of the type (repeatable; replaces the list)",
    )
    p = command(
        "export",
        cmd_type_export,
        "write a license type as a definition file (what define reads)",
        license_type_commands,
    )
    p.add_argument("code")
    p.add_argument("--out", required=True, help="a new file, or - for standard output")
