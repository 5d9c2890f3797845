"""``etrust holder``: holder links, grants and receipts from the command line (the operator),
and the two things the CLI and the API share about links: minting one (audited) and showing the
holder every link minted for them.

A link minted anywhere is an audit record (action ``holder.link``, target ``holder:<hash>``):
the receipts table holds reads through grants only (its rows name a grant), so the holder's
receipts are those rows and these records, newest first. A citizen thus sees that a desk
looked them up, who, when, for how long and with which scope.
"""

from __future__ import annotations

import argparse
from typing import Any

from etrust.cli_io import actor, print_result
from etrust.holder_desk import holder_receipts, mint_holder_link
from etrust.licenses import consent_service, holder_links
from etrust.runtime import Runtime
from license_store.holder_access import (
    DEFAULT_MINUTES,
    MAX_MINUTES,
    MIN_MINUTES,
    READ,
    SCOPES,
    HolderIdentity,
)
from license_store.holder_codes import HOLDER_CODE_TYPES
from trust.clock import system_clock


def _holder(rt: Runtime, token: str) -> HolderIdentity:
    return holder_links(rt).holder_of(token)


def cmd_link(rt: Runtime, args: argparse.Namespace) -> int:
    link = mint_holder_link(
        rt, actor(), args.holder_code, args.holder_code_type, args.minutes, args.scope
    )
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


def _receipt_line(r: dict[str, Any]) -> str:
    if r["kind"] == "link":
        return f"{r['at']}  {r['accessor']} minted a {r['scope'] or 'holder'} link, valid until {r['expires_at']}"
    verb = "downloaded" if r["kind"] == "download" else "read"
    return (
        f"{r['at']}  {r['grantee_name']} ({r['accessor']}) {verb} {r['license']} "
        f"[{', '.join(r['fields'])}]  {r['purpose']}"
    )


def cmd_receipts(rt: Runtime, args: argparse.Namespace) -> int:
    holder = _holder(rt, args.token)
    receipts = holder_receipts(rt, holder.holder_hash)
    print_result(args, receipts, "\n".join(map(_receipt_line, receipts)) or "no receipts")
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
    p.add_argument(
        "--scope",
        choices=SCOPES,
        default=READ,
        help="read (default): licenses, documents, grants, receipts; consent: also create and "
        "withdraw grants. Give consent only to the person themselves (an API service desk "
        "cannot mint it; the portal's login will)",
    )
    for name, handler, help_ in (
        ("grants", cmd_grants, "the holder's grants (consents) and their state"),
        ("receipts", cmd_receipts, "who looked the holder up or read their licenses, and why"),
    ):
        p = command(name, handler, help_, holder)
        p.add_argument("--token", required=True, help="the holder's link token")
