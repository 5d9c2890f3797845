"""Signing and verifying OFD documents with electronic seals (GB/T 33190-2016 §18, GB/T 38540).

Each signature lives in its own ``Sign_N`` folder listed in ``Signatures.xml``. Its
``Signature.xml`` names every package file it protects with a digest of the file's raw bytes
(``CheckValue``); the SES_Signature in ``SignedValue.dat`` signs the hash of ``Signature.xml``
itself. Signatures are added in sequence ("continue-signing"): ``Signatures.xml`` stays
unprotected so later signatures can be listed, and each later signature protects the earlier
signatures' files. A signature that protects ``Signatures.xml`` locks the document.

Verification never raises for a bad document: every problem becomes a report.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from asn1crypto import x509

from signing.context import Timestamper, VerifyContext
from signing.ofd_package import (
    OfdDocument,
    OfdPackage,
    child,
    child_text,
    children,
    el,
    folder_of,
    num,
    xml_document,
)
from signing.report import REASONS, Check, Report, Verdict, check, combine, report
from trust import der
from trust.errors import ConflictError, EtrustError, MalformedInputError
from trust.keys import KeyHandle, default_algorithm

__all__ = ["sign_ofd", "verify_ofd"]

_log = logging.getLogger(__name__)

FORMAT = "ofd"
PROVIDER = "etrust"
PROVIDER_VERSION = "1.0"

# CheckMethod as we write it (OIDs, as the production vendors do), by hashlib name.
_CHECK_METHOD_OUT = {"sm3": "1.2.156.10197.1.401", "sha256": "2.16.840.1.101.3.4.2.1"}
# What readers meet: OID strings, ofdrw's "SM3", and the 2016 schema's MD5 (default) and SHA1.
_CHECK_METHOD_IN = {
    "1.2.156.10197.1.401": "sm3",
    "sm3": "sm3",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "sha256": "sha256",
    "sha-256": "sha256",
    "1.2.840.113549.2.5": "md5",
    "md5": "md5",
    "1.3.14.3.2.26": "sha1",
    "sha1": "sha1",
    "sha-1": "sha1",
}
_LEGACY_DIGESTS = ("md5", "sha1")
_RANK: dict[Verdict, int] = {"PASSED": 0, "INDETERMINATE": 1, "FAILED": 2}

_DEFAULT_STAMP_MM = 40.0
_MAX_STAMP_MM = 200
_STAMP_MARGIN_RIGHT_MM = 25.0
_STAMP_MARGIN_BOTTOM_MM = 35.0


# --- signing ------------------------------------------------------------------------------


def sign_ofd(
    package: bytes,
    seal_der: bytes,
    signer_key: KeyHandle,
    signer_cert: x509.Certificate,
    *,
    page: int = 0,
    box_mm: tuple[float, float, float, float] | None = None,
    timestamper: Timestamper | None = None,
    signing_time: datetime | None = None,
    protect_signatures_xml: bool = False,
) -> bytes:
    """Add a Seal-type signature to the first document of ``package`` and return the new bytes.

    The stamp shows on page ``page`` (0-based) in ``box_mm`` (x, y, width, height in mm); by
    default a box the size of the seal picture near the lower right corner.
    ``protect_signatures_xml`` also protects the signature list, so no further signature can
    be added. Raises :class:`MalformedInputError` for a package we cannot sign and
    :class:`ConflictError` for a locked one.
    """
    from signing.ses import data_hash_name, sign_ses

    when = (signing_time or datetime.now(UTC)).astimezone(UTC)
    pkg = OfdPackage.read(package)
    doc = pkg.first_document()
    if not 0 <= page < len(doc.pages):
        raise MalformedInputError(f"page {page} does not exist: the document has {len(doc.pages)}")
    box = box_mm or _default_box(doc, seal_der)
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise MalformedInputError(f"the stamp box {box!r} is not x, y, width, height in mm")

    if doc.signatures_path is None:
        signatures_path = _join(folder_of(doc.root_path), "Signs/Signatures.xml")
        pkg.put("OFD.xml", _add_signatures_to_ofd_xml(pkg.raw("OFD.xml"), signatures_path), when)
        listed: list[dict[str, str]] = []
        max_id = 0
    else:
        signatures_path = doc.signatures_path
        listed, max_id = _read_signature_list(pkg, signatures_path)

    signs_folder = folder_of(signatures_path)
    n = 0
    while any(name.startswith(_join(signs_folder, f"Sign_{n}/")) for name in pkg.files):
        n += 1
    sign_folder = _join(signs_folder, f"Sign_{n}")
    signature_path = f"{sign_folder}/Signature.xml"
    signed_value_path = f"{sign_folder}/SignedValue.dat"
    seal_path = f"{sign_folder}/Seal.esl"
    sign_id, annot_id = max_id + 1, max_id + 2

    listed.append({"ID": str(sign_id), "Type": "Seal", "BaseLoc": "/" + signature_path})
    pkg.put(signatures_path, _signature_list_xml(listed, annot_id), when)
    pkg.put(seal_path, seal_der, when)

    hash_name = data_hash_name(signer_key.key_type)
    excluded = {signature_path, signed_value_path}
    if not protect_signatures_xml:
        excluded.add(signatures_path)
    references = [
        el(
            "Reference",
            el("CheckValue", text=_digest_b64(hash_name, data)),
            FileRef="/" + name,
        )
        for name, data in pkg.files.items()
        if name not in excluded
    ]
    signature_xml = xml_document(
        "Signature",
        el(
            "SignedInfo",
            el("Provider", ProviderName=PROVIDER, Version=PROVIDER_VERSION),
            el("SignatureMethod", text=default_algorithm(signer_key).oid),
            el("SignatureDateTime", text=when.strftime("%Y%m%d%H%M%SZ")),
            el("References", *references, CheckMethod=_CHECK_METHOD_OUT[hash_name]),
            el(
                "StampAnnot",
                ID=str(annot_id),
                PageRef=doc.pages[page].id,
                Boundary=" ".join(num(v) for v in box),
            ),
            el("Seal", el("BaseLoc", text="/" + seal_path)),
        ),
        el("SignedValue", text="/" + signed_value_path),
    )
    signed_value = sign_ses(
        seal_der,
        signer_key,
        signer_cert,
        data_hash=hashlib.new(hash_name, signature_xml).digest(),
        property_info="/" + signature_path,
        signing_time=when,
        timestamper=timestamper,
    )
    pkg.put(signature_path, signature_xml, when)
    pkg.put(signed_value_path, signed_value, when)
    return pkg.to_bytes()


def _join(folder: str, rest: str) -> str:
    return f"{folder}/{rest}" if folder else rest


def _digest_b64(hash_name: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(hash_name, data).digest()).decode("ascii")


def _default_box(doc: OfdDocument, seal_der: bytes) -> tuple[float, float, float, float]:
    """The seal picture's own size (in mm), near the lower right corner of the page."""
    width, height = _picture_mm(seal_der)
    x0, y0, page_w, page_h = doc.page_box
    x = max(x0, x0 + page_w - width - _STAMP_MARGIN_RIGHT_MM)
    y = max(y0, y0 + page_h - height - _STAMP_MARGIN_BOTTOM_MM)
    return (x, y, width, height)


def _picture_mm(seal_der: bytes) -> tuple[float, float]:
    """The seal picture's width and height, read straight from the DER: the picture is the
    4th field of the seal info, the 1st field of the seal, in every generation. Parsing the
    whole seal (its certificates) would cost milliseconds per signature; sign_ses checks it."""
    try:
        _, start, end = der.read_tlv(seal_der, 0, len(seal_der))
        _, start, end = der.children(seal_der, start, end)[0]  # SES_SealInfo
        _, start, end = der.children(seal_der, start, end)[3]  # SES_ESPictureInfo
        sizes = [
            int.from_bytes(seal_der[s:e], "big", signed=True) if tag == 0x02 else 0
            for tag, s, e in der.children(seal_der, start, end)[2:4]
        ]
    except (EtrustError, IndexError, ValueError):
        sizes = []
    if len(sizes) != 2 or not all(0 < v <= _MAX_STAMP_MM for v in sizes):
        return (_DEFAULT_STAMP_MM, _DEFAULT_STAMP_MM)
    return (float(sizes[0]), float(sizes[1]))


_DOCBODY_END = re.compile(rb"</((?:[A-Za-z_][\w.-]*:)?)DocBody\s*>")


def _add_signatures_to_ofd_xml(raw: bytes, signatures_path: str) -> bytes:
    """OFD.xml with ``DocBody/Signatures`` added, every other byte kept (first signing only).

    Inserted last in the first DocBody, where the schema puts it, with that DocBody's prefix.
    """
    end = _DOCBODY_END.search(raw)
    if end is None:
        raise MalformedInputError("OFD.xml: no closing DocBody tag to add Signatures to")
    prefix = end.group(1).decode("ascii")
    entry = f"<{prefix}Signatures>/{signatures_path}</{prefix}Signatures>".encode()
    return raw[: end.start()] + entry + raw[end.start() :]


def _read_signature_list(pkg: OfdPackage, path: str) -> tuple[list[dict[str, str]], int]:
    """The listed signatures' attributes, and the largest ID used so far (signature IDs and
    stamp annotation IDs share one counter, as ofdrw and vendors write them).

    Raises :class:`ConflictError` when a listed signature protects the list itself: that
    signature locked the document, and a new entry would break it.
    """
    root = pkg.xml(path)
    listed = [
        {k: v for k, v in entry.attrib.items() if not k.startswith("{")}
        for entry in children(root, "Signature")
    ]
    ids = [_id_number(e.get("ID", "")) for e in listed]
    ids.append(_id_number(child_text(root, "MaxSignId") or ""))
    for entry in listed:
        loc = pkg.locate(entry.get("BaseLoc", ""), path)
        signed_info = child(pkg.xml(loc), "SignedInfo")
        ids += [_id_number(a.get("ID", "")) for a in children(signed_info, "StampAnnot")]
        for ref in children(child(signed_info, "References"), "Reference"):
            if pkg.locate(ref.get("FileRef", ""), loc) == path:
                raise ConflictError(
                    f"the document is locked: signature {entry.get('ID', '?')} protects "
                    "the signature list, so no signature can be added"
                )
    return listed, max(ids)


def _id_number(text: str) -> int:
    """The number in an ID: plain (``3``) or in the recommended ``sNNN`` form."""
    found = re.search(r"(\d{1,12})\s*$", text)
    return int(found.group(1)) if found else 0


def _signature_list_xml(listed: list[dict[str, str]], max_id: int) -> bytes:
    return xml_document(
        "Signatures",
        el("MaxSignId", text=str(max_id)),  # first, as the schema orders it
        *(el("Signature", **entry) for entry in listed),
    )


# --- verification -------------------------------------------------------------------------


@dataclass
class _Outcome:
    """One signature's report, what it protects and the files that make it up."""

    report: Report
    protected: set[str] = field(default_factory=set)
    own_files: set[str] = field(default_factory=set)


def verify_ofd(data: bytes, ctx: VerifyContext) -> Report:
    """Verify every signature of an OFD package (standards.md §2.6) and report on the whole."""
    try:
        pkg = OfdPackage.read(data)
        signature_lists = [sigs for _, sigs in pkg.doc_bodies() if sigs is not None]
    except EtrustError as exc:
        return report(FORMAT, "FORMAT_FAILURE", exc.message, checks=[_failed("package", exc)])
    checks: list[Check] = [check("package", "passed", f"{len(pkg.files)} files")]
    findings: list[tuple[str, str]] = []
    outcomes: list[_Outcome] = []
    listed_files: set[str] = set()
    for signatures_path in signature_lists:
        listed_files.add(signatures_path)
        try:
            entries = _listed_signatures(pkg, signatures_path)
        except EtrustError as exc:
            checks.append(_failed("signatures.list", exc))
            findings.append(("FORMAT_FAILURE", exc.message))
            continue
        seen: set[str] = set()
        for entry_id, sig_type, path in entries:
            if path in seen:
                findings.append(("FORMAT_FAILURE", f"/{path} is listed twice"))
                continue
            seen.add(path)
            outcomes.append(_verify_signature(pkg, ctx, entry_id, sig_type, path))
    if not outcomes:
        return combine(FORMAT, [], checks=checks, findings=findings)

    protected = set().union(*(o.protected for o in outcomes))
    own = listed_files.union(*(o.own_files for o in outcomes))
    unprotected = [n for n in pkg.files if n not in protected and n not in own]
    if "OFD.xml" in unprotected:
        # Some vendors leave OFD.xml out; it only points at the (protected) document.
        unprotected.remove("OFD.xml")
        checks.append(check("package.ofd_xml", "skipped", "OFD.xml is covered by no signature"))
    if unprotected:
        names = ", ".join("/" + n for n in unprotected)
        checks.append(check("package.coverage", "failed", f"covered by no signature: {names}"))
        # A broken signature also uncovers what it named; then the signature is the news.
        if not any(o.report.verdict == "FAILED" for o in outcomes):
            findings.append(("UNPROTECTED_CONTENT", f"Not covered by any signature: {names}."))
    else:
        checks.append(check("package.coverage", "passed", "every content file is signed"))
    result = combine(
        FORMAT,
        [o.report for o in outcomes],
        checks=checks,
        findings=findings,
        details={"signatures": len(outcomes)},
    )
    if len(outcomes) > 1 and all(reason != result.reason for reason, _ in findings):
        # combine() names the signature but drops its detail: keep the detail (which file).
        for i, outcome in enumerate(outcomes):
            if outcome.report.reason == result.reason:
                return replace(result, message=f"Signature {i + 1}: {outcome.report.message}")
    return result


def _failed(name: str, exc: EtrustError) -> Check:
    return check(name, "failed", exc.message)


def _listed_signatures(pkg: OfdPackage, path: str) -> list[tuple[str, str, str]]:
    """(ID, Type, package path of Signature.xml) of each entry of Signatures.xml."""
    root = pkg.xml(path)
    out = []
    for entry in children(root, "Signature"):
        loc = entry.get("BaseLoc")
        if not loc:
            raise MalformedInputError(f"/{path}: a Signature entry has no BaseLoc")
        out.append((entry.get("ID", ""), entry.get("Type", "Seal"), pkg.locate(loc, path)))
    return out


def _verify_signature(
    pkg: OfdPackage, ctx: VerifyContext, entry_id: str, sig_type: str, path: str
) -> _Outcome:
    """Verify one signature; every failure becomes part of its report."""
    outcome = _Outcome(report(FORMAT, "INTERNAL"), own_files={path})
    findings: list[tuple[str, str]] = []
    checks: list[Check] = []
    details: dict[str, Any] = {"id": entry_id, "type": sig_type, "signature_xml": "/" + path}
    inner: Report | None = None
    try:
        signature_xml = pkg.raw(path)
        signature = pkg.xml(path)
        signed_info = child(signature, "SignedInfo")
        if signed_info is None:
            raise MalformedInputError(f"/{path} has no SignedInfo")
        _check_references(pkg, path, signed_info, outcome.protected, checks, findings)
        value_loc = child_text(signature, "SignedValue")
        if not value_loc:
            raise MalformedInputError(f"/{path} has no SignedValue")
        value_path = pkg.locate(value_loc, path)
        outcome.own_files.add(value_path)
        seal_loc = child_text(child(signed_info, "Seal"), "BaseLoc")
        seal_path = pkg.locate(seal_loc, path) if seal_loc else None
        if seal_path:
            outcome.own_files.add(seal_path)
        signed_value = pkg.raw(value_path)
        if sig_type == "Seal":
            if seal_path:
                _check_seal_file(pkg, seal_path, signed_value, checks, findings)
            from signing.ses import verify_ses

            inner = verify_ses(signed_value, ctx, original=signature_xml, format=FORMAT)
        elif sig_type == "Sign":
            inner = _verify_sign_type(signed_value, signature_xml, ctx)
        else:
            raise MalformedInputError(f"signature {entry_id!r} has the unknown Type {sig_type!r}")
    except EtrustError as exc:
        checks.append(_failed("signature", exc))
        findings.append(("FORMAT_FAILURE", exc.message))
    except Exception:  # a bug of ours must not become an unanswered request
        _log.exception("OFD signature %s could not be verified", path)
        findings.append(("INTERNAL", ""))
    outcome.report = _signature_report(findings, checks, details, inner)
    return outcome


def _check_references(
    pkg: OfdPackage,
    path: str,
    signed_info: Element,
    protected: set[str],
    checks: list[Check],
    findings: list[tuple[str, str]],
) -> None:
    """Compare every CheckValue with the digest of the file it names (file integrity)."""
    references = child(signed_info, "References")
    refs = children(references, "Reference")
    if not refs:
        raise MalformedInputError(f"/{path} protects no file (no Reference)")
    method = (references.get("CheckMethod") if references is not None else None) or "MD5"
    hash_name = _CHECK_METHOD_IN.get(method.strip().lower())
    if hash_name is None:
        checks.append(check("references", "indeterminate", f"unknown CheckMethod {method!r}"))
        findings.append(("CRYPTO_CONSTRAINTS_FAILURE", f"Unknown CheckMethod {method!r}."))
        return
    changed: list[str] = []
    missing: list[str] = []
    for ref in refs:
        target = pkg.locate(ref.get("FileRef", ""), path)
        name = "/" + target
        expected = _b64(child_text(ref, "CheckValue"), name)
        if target not in pkg:
            missing.append(name)
            checks.append(check(f"reference {name}", "failed", "the file is missing"))
            continue
        protected.add(target)
        if hashlib.new(hash_name, pkg.raw(target)).digest() == expected:
            note = f"{hash_name} matches" + (
                " (weak legacy digest)" if hash_name in _LEGACY_DIGESTS else ""
            )
            checks.append(check(f"reference {name}", "passed", note))
        else:
            changed.append(name)
            checks.append(check(f"reference {name}", "failed", f"{hash_name} differs: modified"))
    if changed:
        findings.append(("HASH_FAILURE", f"Modified after signing: {', '.join(changed)}."))
    if missing:
        findings.append(("HASH_FAILURE", f"Removed after signing: {', '.join(missing)}."))


def _verify_sign_type(signed_value: bytes, signature_xml: bytes, ctx: VerifyContext) -> Report:
    """A ``Type="Sign"`` signature: CMS SignedData (GB/T 35275 for SM2) over Signature.xml.

    ofdrw encapsulates the SM3 digest of Signature.xml; others sign Signature.xml detached.
    Either way the CMS verifier judges it; here we only decide what content it must cover.
    """
    from signing.cms import verify_detached

    content = _attached_content(signed_value)
    if content is None:
        data = signature_xml
    else:
        candidates = [hashlib.new(h, signature_xml).digest() for h in ("sm3", "sha256")]
        if content not in (*candidates, signature_xml):
            return report(
                FORMAT,
                "HASH_FAILURE",
                "The signed content is not (the digest of) this Signature.xml.",
                checks=[check("cms.content", "failed", "attached content is another document's")],
            )
        data = content
    return verify_detached(signed_value, data, ctx)


def _attached_content(blob: bytes) -> bytes | None:
    """The encapsulated content of a DER ContentInfo{SignedData}, or None (detached, or not
    strict DER: then the CMS verifier reports on it)."""
    try:
        _, start, end = der.read_tlv(blob, 0, len(blob))
        info = der.children(blob, start, end)
        if len(info) < 2 or info[1][0] != 0xA0:
            return None
        ((_, start, end),) = der.children(blob, info[1][1], info[1][2])  # SignedData
        _, start, end = der.children(blob, start, end)[2]  # version, digests, encapContentInfo
        encap = der.children(blob, start, end)
        if len(encap) < 2 or encap[1][0] != 0xA0:
            return None
        ((tag, start, end),) = der.children(blob, encap[1][1], encap[1][2])
    except (EtrustError, IndexError, ValueError):
        return None
    return blob[start:end] if tag == 0x04 else None


def _b64(text: str | None, name: str) -> bytes:
    if not text:
        raise MalformedInputError(f"the reference to {name} has no CheckValue")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedInputError(f"the CheckValue of {name} is not base64") from exc


def _check_seal_file(
    pkg: OfdPackage,
    seal_path: str,
    signed_value: bytes,
    checks: list[Check],
    findings: list[tuple[str, str]],
) -> None:
    """Seal.esl must be the very seal the signature embeds (ofdrw checks the same)."""
    stored = pkg.raw(seal_path)
    try:
        embedded = _embedded_seal(signed_value)
    except EtrustError as exc:
        checks.append(_failed("seal_file", exc))
        return  # the SES verification reports the unreadable signature
    if stored == embedded:
        checks.append(check("seal_file", "passed", f"/{seal_path} is the signed seal"))
    else:
        checks.append(check("seal_file", "failed", f"/{seal_path} is not the signed seal"))
        findings.append(("SEAL_MISMATCH", f"/{seal_path} differs from the seal in the signature."))


def _embedded_seal(signed_value: bytes) -> bytes:
    """The SESeal inside an SES_Signature, as stored: the 2nd field of TBS_Sign, the 1st field
    of the signature, in every generation. A DER walk, since verify_ses parses it fully anyway;
    the full parser only for what the strict walk refuses."""
    try:
        _, start, end = der.read_tlv(signed_value, 0, len(signed_value))
        _, start, end = der.children(signed_value, start, end)[0]  # TBS_Sign
        version, seal = der.children(signed_value, start, end)[:2]
        return signed_value[version[2] : seal[2]]  # from the end of version to the seal's end
    except (EtrustError, IndexError, ValueError):
        from signing.ses import parse_ses_signature

        return parse_ses_signature(signed_value).seal.der


def _signature_report(
    findings: list[tuple[str, str]],
    checks: list[Check],
    details: Mapping[str, Any],
    inner: Report | None,
) -> Report:
    """One signature's report: the worst of the package-level findings and the SES report
    (the findings first, so a modified file is named rather than a consequence of it)."""
    all_checks = [*checks, *(inner.checks if inner else ())]
    all_details = {**(inner.details if inner else {}), **details}
    worst = max(findings, key=lambda f: _RANK[REASONS[f[0]].verdict], default=None)
    worst_rank = _RANK[REASONS[worst[0]].verdict] if worst else -1
    if inner is not None and _RANK[inner.verdict] > worst_rank:
        return Report(
            FORMAT,
            inner.verdict,
            inner.reason,
            inner.message,
            inner.message_zh,
            tuple(all_checks),
            (),
            all_details,
        )
    if worst is None:
        return report(FORMAT, "OK", checks=all_checks, details=all_details)
    return report(FORMAT, worst[0], worst[1], checks=all_checks, details=all_details)
