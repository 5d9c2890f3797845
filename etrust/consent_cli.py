"""``etrust holder``: holder links, grants and receipts from the command line (a service desk)."""

from __future__ import annotations

import argparse
from typing import Any

from etrust.cli_io import actor, print_result
from etrust.licenses import consent_service, holder_links, mint_link
from etrust.runtime import Runtime
from license_store.holder_access import (
    DEFAULT_MINUTES,
    MAX_MINUTES,
    MIN_MINUTES,
    HolderIdentity,
)
from license_store.holder_codes import HOLDER_CODE_TYPES
from trust.clock import system_clock


def _holder(rt: Runtime, token: str) -> HolderIdentity:
    return holder_links(rt).holder_of(token)


def cmd_link(rt: Runtime, args: argparse.Namespace) -> int:
    link = mint_link(rt, actor(), args.holder_code, args.holder_code_type, args.minutes)
    print_result(args, link, link["url"])
    return 0


def cmd_grants(rt: Runtime, args: argparse.Namespace) -> int:
    holder = _holder(rt, args.token)
    now = system_clock()
    grants = [g.to_dict(now) for g in consent_service(rt).grants(holder.holder_hash)]
    text = "\n".join(
        f"{g['id']}  {g['state']:<8} {g['grantee_name']} ({g['grantee']})  until "
        f"{g['expires_at']}  uses left: {'unlimited' if g['uses_left'] is None else g['uses_left']}"
        f"  {g['purpose']}"
        for g in grants
    )
    print_result(args, grants, text or "no grants")
    return 0


def cmd_receipts(rt: Runtime, args: argparse.Namespace) -> int:
    holder = _holder(rt, args.token)
    receipts = [r.to_dict() for r in consent_service(rt).receipts(holder.holder_hash)]
    text = "\n".join(
        f"{r['at']}  {r['grantee_name']} ({r['accessor']}) read {r['license']} "
        f"[{', '.join(r['fields'])}]  {r['purpose']}"
        for r in receipts
    )
    print_result(args, receipts, text or "no receipts")
    return 0


def _minutes(value: str) -> int:
    try:
        minutes = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of minutes") from None
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"a link lives {MIN_MINUTES}-{MAX_MINUTES} minutes")
    return minutes


def add_commands(sub: Any, command: Any) -> None:
    """Register the holder commands on the main parser."""
    holder = sub.add_parser(
        "holder", help="license holders: links, grants, receipts"
    ).add_subparsers(dest="holder_command", required=True)
    p = command("link", cmd_link, "a signed link that lets a holder see their licenses", holder)
    p.add_argument("--holder-code", required=True, help="ID number, USCC, ... (checked)")
    p.add_argument(
        "--holder-code-type",
        default="111",
        choices=sorted(HOLDER_CODE_TYPES),
        help="GB/T 36903: 111 resident ID, 001 USCC, ...",
    )
    p.add_argument(
        "--minutes", type=_minutes, default=DEFAULT_MINUTES, help="lifetime (1-1440, default 30)"
    )
    for name, handler, help_ in (
        ("grants", cmd_grants, "the holder's grants (consents) and their state"),
        ("receipts", cmd_receipts, "who read the holder's licenses, when and why"),
    ):
        p = command(name, handler, help_, holder)
        p.add_argument("--token", required=True, help="the holder's link token")
