"""``etrust verify``: validate a certificate or check a CRL, for people and for scripts.

Without ``--trust`` the home's own roots are the anchors, its issuing CAs the intermediates,
and its revocations count (through freshly signed CRLs). Exit 0 valid, 1 invalid, 2 undecided.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asn1crypto import pem

from etrust.runtime import Runtime
from trust.certificates import load_certificates
from trust.crl import load_crl
from trust.errors import MalformedInputError
from trust.validation import RevocationMode, ValidationReport, validate_chain, validate_crl

EXIT_CODES = {"PASSED": 0, "FAILED": 1, "INDETERMINATE": 2}


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise MalformedInputError(f"cannot read {path}: {exc.strerror}") from exc


def _is_crl(data: bytes) -> bool:
    if pem.detect(data):
        return b"-----BEGIN X509 CRL-----" in data
    try:
        load_crl(data)
    except MalformedInputError:
        return False
    return True


def run_verify(rt: Runtime | None, args: argparse.Namespace) -> int:
    data = _read(args.file)
    untrusted = [c for path in args.untrusted for c in load_certificates(_read(path))]
    crls = [load_crl(_read(path)) for path in args.crl]
    if args.trust:
        roots = [c for path in args.trust for c in load_certificates(_read(path))]
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
