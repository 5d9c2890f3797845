"""``etrust seal create|list|export`` and ``etrust sign``: the department officer's commands."""

from __future__ import annotations

import argparse
from typing import Any

from etrust.cli_io import actor, print_result, read_file, write_new
from etrust.runtime import Runtime
from etrust.seals import MAX_VALID_DAYS, SEAL_TYPES, SealRequest, SealStore, make_department_seal


def cmd_seal_create(rt: Runtime, args: argparse.Namespace) -> int:
    picture = read_file(args.picture, 1 << 20) if args.picture else None
    record = make_department_seal(
        rt,
        actor(),
        SealRequest(
            department=args.department,
            name=args.name,
            alg=args.alg,
            seal_type=args.type,
            valid_days=args.valid_days,
            title=args.title or "",
            picture_png=picture,
            width_mm=args.width_mm,
            height_mm=args.height_mm or args.width_mm,
            key_uri=args.key_uri,
            version=args.version,
            extra_signers=tuple(_certificate_der(path) for path in args.signer_cert),
        ),
        args.approval,
    )
    print_result(
        args,
        record.to_dict(),
        f"seal {record.es_id} ({record.name}, {record.alg}) made for {record.department}, "
        f"valid to {record.valid_to:%Y-%m-%d}",
    )
    return 0


def _certificate_der(path: str) -> bytes:
    from trust.certificates import load_certificate

    return bytes(load_certificate(read_file(path, 64 * 1024)).dump())


def cmd_seal_list(rt: Runtime, args: argparse.Namespace) -> int:
    seals = SealStore(rt.sessions).list(args.department)
    text = "\n".join(
        f"{s.es_id}  {s.alg:<4} {s.status:<8} {s.department:<16} {s.name}  "
        f"{s.valid_from:%Y-%m-%d}..{s.valid_to:%Y-%m-%d}"
        for s in seals
    )
    print_result(args, [s.to_dict() for s in seals], text or "no seals")
    return 0


def cmd_seal_export(rt: Runtime, args: argparse.Namespace) -> int:
    seal = SealStore(rt.sessions).get(args.id)
    write_new(args.out, seal.seal_der)
    print_result(
        args, {"id": seal.es_id, "out": args.out}, f"seal {seal.es_id} written to {args.out}"
    )
    return 0


def cmd_sign(rt: Runtime, args: argparse.Namespace) -> int:
    from etrust.seals import seal_file
    from signing.verifier import MAX_DOCUMENT

    data = read_file(args.file, MAX_DOCUMENT)
    kind, out = seal_file(rt, actor(), args.seal, data, pdf_level=args.pdf_level)
    write_new(args.out, out)
    what = {"ofd": "sealed OFD", "pdf": "sealed PDF", "cms": "detached signature"}[kind]
    print_result(
        args,
        {"format": kind, "seal": args.seal, "out": args.out},
        f"{what} written to {args.out}",
    )
    return 0


def add_commands(sub: Any, command: Any) -> None:
    """Register the commands on the main parser (``command`` adds --json and the handler)."""
    seal = sub.add_parser("seal", help="electronic seals (制章)").add_subparsers(
        dest="seal_command", required=True
    )
    p = command("create", cmd_seal_create, "make a department's seal (dual control if set)", seal)
    p.add_argument("--department", required=True, help="the department's code")
    p.add_argument("--name", required=True, help="the seal's name, e.g. the department's name")
    p.add_argument("--alg", choices=("sm2", "rsa"), default="sm2")
    p.add_argument(
        "--type",
        type=int,
        default=1,
        choices=sorted(SEAL_TYPES),
        help=", ".join(f"{k} {v}" for k, v in SEAL_TYPES.items()),
    )
    p.add_argument("--valid-days", type=int, default=MAX_VALID_DAYS)
    p.add_argument("--title", help="text under the star of a drawn seal, e.g. 合同专用章")
    p.add_argument("--picture", help="a PNG or JPEG to use instead of a drawn red seal")
    p.add_argument("--width-mm", type=int, default=40)
    p.add_argument("--height-mm", type=int)
    p.add_argument("--key-uri", help="the seal key on a device (pkcs11:, skf:, sdf:)")
    p.add_argument(
        "--signer-cert",
        action="append",
        default=[],
        help="a further signer certificate the seal allows (PEM or DER; repeatable)",
    )
    p.add_argument(
        "--version", type=int, choices=(4, 5), default=4, help="5: GM/T 0031-2025, timestamped"
    )
    p.add_argument("--approval", help="approval request id, where dual control applies")
    p = command("list", cmd_seal_list, "seals and their validity", seal)
    p.add_argument("--department")
    p = command("export", cmd_seal_export, "write a seal as a GB/T 38540 .esl file", seal)
    p.add_argument("id")
    p.add_argument("--out", required=True)

    p = command(
        "sign",
        cmd_sign,
        "seal an OFD or PDF (signature inside), or sign any other file (detached CMS)",
    )
    p.add_argument("file")
    p.add_argument("--seal", required=True, help="the seal id (see etrust seal list)")
    p.add_argument("--out", required=True, help="the signed file (a new file)")
    p.add_argument(
        "--pdf-level",
        choices=("B-B", "B-T", "B-LT", "B-LTA"),
        default="B-T",
        help="PAdES level for PDFs (B-LT and B-LTA embed revocation data)",
    )
