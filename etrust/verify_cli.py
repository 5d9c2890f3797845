"""``etrust verify``: a signed document (OFD, PDF, seal, SES signature, CMS), a certificate or
a CRL, for people and for scripts.

Without ``--trust`` the home's own roots are the anchors, its issuing CAs the intermediates,
and its revocations count (through freshly signed CRLs). Exit 0 valid, 1 invalid, 2 undecided.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asn1crypto import pem

from etrust.cli_io import read_file
from etrust.runtime import Runtime
from signing.context import VerifyContext
from signing.report import Report
from signing.report import report as document_report
from signing.verifier import MAX_DOCUMENT, detect_format, verify_document
from trust.certificates import load_certificates
from trust.crl import load_crl
from trust.errors import MalformedInputError
from trust.validation import (
    RevocationMode,
    TrustStore,
    ValidationReport,
    validate_chain,
    validate_crl,
)

EXIT_CODES = {"PASSED": 0, "FAILED": 1, "INDETERMINATE": 2}


def _is_crl(data: bytes) -> bool:
    if pem.detect(data):
        return b"-----BEGIN X509 CRL-----" in data
    try:
        load_crl(data)
    except MalformedInputError:
        return False
    return True


def run_verify(rt: Runtime | None, args: argparse.Namespace) -> int:
    data = read_file(args.file, MAX_DOCUMENT)
    kind = detect_format(data)
    if kind == "unknown" and not pem.detect(data) and data[:1] != b"\x30":
        # neither a document, nor PEM, nor DER (a certificate or CRL): not ours to judge
        return _print_document(document_report("unknown", "UNSUPPORTED_FORMAT"), args)
    untrusted = [c for path in args.untrusted for c in load_certificates(read_file(path))]
    crls = [load_crl(read_file(path)) for path in args.crl]
    if args.trust:
        roots = [c for path in args.trust for c in load_certificates(read_file(path))]
    else:
        if rt is None:  # pragma: no cover - main always opens the runtime
            raise MalformedInputError("give --trust, or a home with CAs")
        pki = rt.pki()
        roots = [ca.certificate for name, ca in pki.cas.items() if name.startswith("root-")]
        untrusted += [
            ca.certificate for name, ca in pki.cas.items() if not name.startswith("root-")
        ]
        crls += [ca.crl() for ca in pki.cas.values()]
    if not roots:
        raise MalformedInputError("no trust anchors: give --trust CERT or run etrust init")
    mode: RevocationMode = args.revocation
    if kind != "unknown":
        context = VerifyContext(
            trust=TrustStore(roots, untrusted),
            crls=tuple(c.dump() for c in crls),
            revocation=mode,
            clock=(lambda: args.at) if args.at else VerifyContext().clock,
        )
        content = _detached_content(args) if kind in ("cms", "ses") else None
        return _print_document(verify_document(data, context, content=content, kind=kind), args)
    report: ValidationReport
    if _is_crl(data):
        report = validate_crl(
            data, trust_roots=roots, intermediates=untrusted, crls=crls, at=args.at, revocation=mode
        )
    else:
        certs = load_certificates(data) if pem.detect(data) else None
        target = certs[0] if certs else data
        extra = certs[1:] if certs else []
        report = validate_chain(
            target,
            trust_roots=roots,
            intermediates=[*extra, *untrusted],
            crls=crls,
            at=args.at,
            revocation=mode,
        )
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"{report.verdict}: {report.message}")
        if report.path:
            print("path: " + " <- ".join(reversed(report.path)))
        for check in report.checks:
            print(f"  [{check['result']}] {check['name']}: {check['detail']}")
    return EXIT_CODES[report.verdict]


def _detached_content(args: argparse.Namespace) -> bytes | None:
    """What a detached signature signs: ``--content``, or the file the name says (x.pdf.p7s)."""
    if args.content:
        return read_file(args.content, MAX_DOCUMENT)
    path = Path(args.file)
    if path.suffix.lower() in (".p7s", ".sig", ".dat") and path.with_suffix("").is_file():
        return read_file(str(path.with_suffix("")), MAX_DOCUMENT)
    return None


def _print_document(report: Report, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2, default=str))
        return EXIT_CODES[report.verdict]
    print(f"{report.verdict} ({report.format}): {report.message_zh}")
    print(f"  {report.reason}: {report.message}")
    assessment = report.assessment()
    print(f"  完整性：{assessment['integrity_zh']}；可信性：{assessment['trust_zh']}")
    for index, signature in enumerate(report.signatures or (report,), 1):
        if report.signatures:
            print(f"signature {index}: {signature.verdict} {signature.reason}")
        for item in signature.checks:
            print(f"  [{item['result']}] {item['name']}: {item['detail']}")
    if report.signatures:
        for item in report.checks:
            print(f"  [{item['result']}] {item['name']}: {item['detail']}")
    return EXIT_CODES[report.verdict]
