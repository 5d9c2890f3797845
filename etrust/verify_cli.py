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

from etrust.cli_io import actor, read_file
from etrust.runtime import Runtime
from signing.context import VerifyContext
from signing.report import Report
from signing.report import report as document_report
from signing.verifier import MAX_DOCUMENT, detect_format, verify_document
from trust.certificates import load_certificate, load_certificates
from trust.clock import system_clock
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


def run_code(rt: Runtime | None, args: argparse.Namespace, texts: list[str] | None) -> int:
    """A license code (typed, or read from an image): 0 valid, 1 invalid, 2 cannot tell."""
    from verify_app.code_check import (
        VERDICT_ZH,
        CodeCheck,
        CodeChecker,
        StatusListSource,
        StatusSource,
    )
    from verify_app.presentation import check_presentation, is_presentation
    from verify_app.trust_list import read_trust_list

    if texts is None:
        if args.file is None:
            raise MalformedInputError("give --code TEXT or an image of the code")
        from etrust.verification import decode_image

        texts = decode_image(read_file(args.file)) or [""]
    now = args.at or system_clock()
    holder = args.holder_code
    if args.offline or rt is None:
        if not args.trust_list:
            raise MalformedInputError("--offline needs --trust-list FILE")
        if not args.trust:
            raise MalformedInputError(
                "--offline needs --trust ROOT.pem: the root the trust list must chain to "
                "(etrust ca export root-sm2 --out ROOT.pem on the registry's host)"
            )
        anchors = [c for path in args.trust for c in load_certificates(read_file(path))]
        checker = CodeChecker(read_trust_list(read_file(args.trust_list), anchors=anchors))
        status: StatusSource | None = None
        if args.status_list:
            from license_store.status_list import read_status_list

            listed = read_status_list(
                read_file(args.status_list), load_certificate(checker.trust_list.signer).public_key
            )
            status = StatusListSource.from_list(listed)
    else:
        from etrust.verification import RegistryStatus
        from etrust.verification import checker as home_checker

        checker = home_checker(rt)
        status = RegistryStatus(rt)

    def check(text: str) -> CodeCheck:
        if rt is not None and not args.offline and is_presentation(text):  # spent here, online
            from etrust.api_presentation import presentation_service

            return check_presentation(presentation_service(rt), text, holder, actor(), now)
        return checker.check(text, now=now, status=status, holder_code=holder)

    results = [check(text) for text in texts]
    if args.json:
        print(
            json.dumps(
                [r.to_dict() for r in results] if len(results) > 1 else results[0].to_dict(),
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for r in results:
            print(f"{VERDICT_ZH[r.verdict]}（{r.verdict}）: {r.message_zh}  [{r.reason}]")
            for key, value in r.license.items():
                print(f"  {key}: {value}")
            if r.status is not None:
                age = now - r.status.as_of
                print(
                    f"  status: {r.status.status} ({r.status.source}, {int(age.total_seconds())} s old)"
                )
            if r.holder_match is not None:
                print(f"  holder matches: {'yes' if r.holder_match else 'NO'}")
    worst = max(results, key=lambda r: {"valid": 0, "unknown": 1, "invalid": 2}[r.verdict])
    return {"valid": 0, "invalid": 1, "unknown": 2}[worst.verdict]


def _is_crl(data: bytes) -> bool:
    if pem.detect(data):
        return b"-----BEGIN X509 CRL-----" in data
    try:
        load_crl(data)
    except MalformedInputError:
        return False
    return True


def run_verify(rt: Runtime | None, args: argparse.Namespace) -> int:
    if args.code is not None or args.offline:
        return run_code(rt, args, [args.code] if args.code is not None else None)
    if args.file is None:
        raise MalformedInputError("give a FILE to verify, or --code TEXT")
    data = read_file(args.file, MAX_DOCUMENT)
    if data.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF")):
        from etrust.verification import decode_image

        return run_code(rt, args, decode_image(data) or [""])
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
