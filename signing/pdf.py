"""PAdES signatures in PDF files (B-B, B-T, B-LT, B-LTA) through pyhanko, SM2 as a peer of RSA.

pyhanko writes and reads the PDF structure, the CMS container, the DSS and document
timestamps. What it cannot do by itself is done through its own extension points: our keys
sign through a :class:`~pyhanko.sign.signers.pdf_cms.Signer` subclass, our timestamping
service answers through a :class:`~pyhanko.sign.timestamps.TimeStamper` subclass, and every
signature met during verification (the CMS signer info, the timestamp tokens, certificates,
CRLs, OCSP answers) goes through our algorithm registry via the ``signature_validator`` and
``algorithm_usage_policy`` of a certvalidator ``ValidationContext``. SM2 signatures use
sm2sign-with-sm3 (1.2.156.10197.1.501) over SM3 digests with the default ID 1234567812345678.

Common PDF readers do not check SM2 signatures; see docs/pdf-signing.md.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from asn1crypto import algos, cms, crl, ocsp, tsp, x509
from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.content import PdfContent
from pyhanko.pdf_utils.font.api import FontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBox, TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter, PageObject, PdfFileWriter
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESSubIndic
from pyhanko.sign.attributes import CMSAttributeProvider, SignedAttributeProviderSpec
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import SigFieldSpec, SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.validation import (
    DocumentTimestampStatus,
    EmbeddedPdfSignature,
    PdfSignatureStatus,
    SignatureCoverageLevel,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.utils import CMSAlgorithmUsagePolicy
from pyhanko.stamp import StaticStampStyle, TextStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.policy_decl import AlgorithmUsageConstraint
from pyhanko_certvalidator.registry import SimpleCertificateStore, SimpleTrustManager

from signing import fonts
from signing.context import Timestamper, VerifyContext
from signing.report import REASONS, Check, Report, chain_reason, check, combine, report
from trust import asn1_gm  # noqa: F401  (SM2/SM3 names known to asn1crypto)
from trust.algorithms import DEFAULT_FOR_KEY, SignatureAlgorithm
from trust.ca import describe_name
from trust.errors import (
    ConfigurationError,
    EtrustError,
    MalformedInputError,
    TimestampTokenError,
)
from trust.keys import KeyHandle
from trust.validation import (
    ALGORITHM_POLICY,
    SIGNATURE_VALIDATOR,
    avalidate_chain,
    certificate_of,
    crl_of,
    ocsp_of,
    run_sync,
    validator_in_use,
)

log = logging.getLogger(__name__)


class _NoFetchingNotice(logging.Filter):
    """pyhanko warns at every long-term signature that it may not fetch revocation data; here
    it never may (the caller gives the data), so the warning would only fill the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fetching is not allowed" not in record.getMessage()


logging.getLogger("pyhanko.sign.signers.pdf_signer").addFilter(_NoFetchingNotice())

__all__ = [
    "FONT_PATH",
    "LEVELS",
    "Level",
    "RevocationData",
    "RevocationSource",
    "Stamp",
    "asign_pdf",
    "averify_pdf",
    "blank_pdf",
    "sign_pdf",
    "verify_pdf",
]

FONT_PATH = fonts.FONT_PATH
"""The CJK font embedded for page and stamp text (signing.fonts); tests point it elsewhere."""

Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]
LEVELS: tuple[Level, ...] = ("B-B", "B-T", "B-LT", "B-LTA")

FORMAT = "pdf"
_PT_PER_MM = 72 / 25.4
_MAX_PDF = 64 * 1024 * 1024
_EC_SIGNATURE_MAX = 72
"""The longest DER ECDSA or SM2 signature over a 256-bit curve (SEQUENCE of two INTEGERs)."""


# --------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class Stamp:
    """A visible seal: a PNG drawn in ``box_mm`` (x, y, width, height from the page's
    lower-left corner, in millimetres) on page ``page`` (0-based), with optional text over it."""

    png: bytes
    page: int = 0
    box_mm: tuple[float, float, float, float] = (130.0, 30.0, 42.0, 42.0)
    text: str | None = None


@dataclass(frozen=True)
class RevocationData:
    """CRLs and OCSP responses (DER) to embed; also a :class:`RevocationSource` that always
    answers with itself (the usual case: the CAs' current CRLs)."""

    crls: tuple[bytes, ...] = ()
    ocsp_responses: tuple[bytes, ...] = ()

    def revocation_for(self, certificates: Sequence[x509.Certificate]) -> RevocationData:
        return self


class RevocationSource(Protocol):
    """Gives the revocation data that shows ``certificates`` unrevoked now (B-LT, B-LTA).

    ``certificates`` are the signer's, its chain and the TSA's, so a source backed by an OCSP
    responder knows whom to ask about.
    """

    def revocation_for(self, certificates: Sequence[x509.Certificate]) -> RevocationData: ...


# --------------------------------------------------------------------------------------------
# pyhanko adapters: our key as a Signer, our TSA as a TimeStamper, our algorithm policy for CMS


class _KeySigner(Signer):  # type: ignore[misc]
    """pyhanko's Signer for a :class:`KeyHandle`: the mechanism is fixed by the key type, so
    pyhanko never guesses one (it has no SM2), and size estimation never touches the key."""

    def __init__(
        self, key: KeyHandle, cert: x509.Certificate, chain: Sequence[x509.Certificate]
    ) -> None:
        self._key = key
        self._algorithm: SignatureAlgorithm = DEFAULT_FOR_KEY[key.key_type]
        cert_der = _der(cert)
        cert = _lean(cert_der)
        chain = [_lean(_der(c)) for c in chain]
        if cert.public_key.dump() != key.public_key_info.dump():
            raise MalformedInputError("the certificate does not belong to the signing key")
        super().__init__(
            signing_cert=cert,
            cert_registry=SimpleCertificateStore.from_certs([cert, *chain]),  # type: ignore[no-untyped-call]
            signature_mechanism=self._algorithm.algorithm_identifier(),
        )
        self._max_signature_size = _max_signature_size(key)
        self.signed_attr_prov_spec = _PadesAttributes(
            _signing_certificate_v2(cert_der, self._algorithm.hash_name)
        )

    @property
    def digest_name(self) -> str:
        return self._algorithm.hash_name

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if digest_algorithm != self._algorithm.hash_name:
            raise SigningError(f"{self._algorithm.name} signs {self._algorithm.hash_name} digests")
        if dry_run:
            return bytes(self._max_signature_size)
        return self._key.sign(data, self._algorithm)


_SIGNERS: dict[tuple[str, bytes, tuple[bytes, ...]], _KeySigner] = {}
_ADAPTERS: weakref.WeakKeyDictionary[Timestamper, _TsaAdapter] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _signer_for(
    key: KeyHandle, cert: x509.Certificate, chain: Sequence[x509.Certificate]
) -> _KeySigner:
    """One pyhanko signer per key and chain, kept: building its certificate registry cost
    more than the signature (a seal signs thousands of licenses with the same chain)."""
    cache_key = (key.key_uri, _der(cert), tuple(_der(c) for c in chain))
    with _CACHE_LOCK:
        found = _SIGNERS.get(cache_key)
    if found is None or found._key is not key:
        found = _KeySigner(key, cert, chain)
        with _CACHE_LOCK:
            if len(_SIGNERS) > 256:
                _SIGNERS.clear()
            _SIGNERS[cache_key] = found
    return found


def _adapter_for(timestamper: Timestamper) -> _TsaAdapter:
    """One pyhanko timestamper per of ours, kept with it: pyhanko sizes a signature with a
    dummy token it fetches once per timestamper object, which per call meant a second token
    for every PDF."""
    try:
        with _CACHE_LOCK:
            found = _ADAPTERS.get(timestamper)
            if found is None:
                found = _ADAPTERS[timestamper] = _TsaAdapter(timestamper)
        return found
    except TypeError:  # a timestamper that cannot be weakly referenced or hashed
        return _TsaAdapter(timestamper)


def _max_signature_size(key: KeyHandle) -> int:
    if key.key_type == "rsa":
        modulus: int = key.public_key_info["public_key"].parsed["modulus"].native
        return (modulus.bit_length() + 7) // 8
    return _EC_SIGNATURE_MAX


def _lean(der: bytes) -> x509.Certificate:
    """A certificate parsed lazily from DER, one per signature.

    asn1crypto re-encodes a certificate that was built in memory whenever pyhanko copies it
    into a CMS structure, which cost more than signing. A fresh object per signature (loading
    only wraps the bytes) is never shared between threads: asn1crypto parses lazily and is
    not safe to fill from two threads at once.
    """
    try:
        cert = x509.Certificate.load(der)
        cert.public_key.dump()
    except (ValueError, TypeError) as exc:
        raise MalformedInputError(f"unreadable certificate: {exc}") from exc
    return cert


@functools.lru_cache(maxsize=256)
def _signing_certificate_v2(cert_der: bytes, hash_name: str) -> bytes:
    """The ESS signing-certificate-v2 value (RFC 5035) naming ``cert_der``, as DER.

    PAdES needs it in every signature; asn1crypto builds it slowly, so it is built once per
    certificate. The certificate hash uses the signature's digest (SM3 for SM2).
    """
    cert = x509.Certificate.load(cert_der)
    value = tsp.SigningCertificateV2(
        {
            "certs": [
                {
                    "hash_algorithm": {"algorithm": hash_name},
                    "cert_hash": hashlib.new(hash_name, cert_der).digest(),
                    "issuer_serial": {
                        "issuer": [x509.GeneralName(name="directory_name", value=cert.issuer)],
                        "serial_number": cert.serial_number,
                    },
                }
            ]
        }
    )
    der: bytes = value.dump()
    return der


class _PadesAttributes(SignedAttributeProviderSpec):  # type: ignore[misc]
    """PAdES baseline signed attributes besides content type and digest (pyhanko adds those):
    only signing-certificate-v2; the signing time is the signature dictionary's /M."""

    def __init__(self, signing_certificate_v2: bytes) -> None:
        self._ess = signing_certificate_v2

    def signed_attr_providers(
        self, data_digest: bytes, digest_algorithm: str
    ) -> Iterable[CMSAttributeProvider]:
        yield _SigningCertificateV2(self._ess)


class _SigningCertificateV2(CMSAttributeProvider):  # type: ignore[misc]
    attribute_type = "signing_certificate_v2"

    def __init__(self, der: bytes) -> None:
        self._der = der

    async def build_attr_value(self, dry_run: bool = False) -> tsp.SigningCertificateV2:
        return tsp.SigningCertificateV2.load(self._der)


def _der(cert: x509.Certificate) -> bytes:
    if not isinstance(cert, x509.Certificate):
        raise MalformedInputError("certificates are asn1crypto x509.Certificate objects")
    der: bytes = cert.dump()
    return der


class _TsaAdapter(TimeStamper):  # type: ignore[misc]
    """pyhanko's TimeStamper around our :class:`Timestamper`.

    pyhanko asks for a token over a digest it computed while writing (the signature value's
    digest for B-T, the byte ranges' for a document timestamp): ``timestamp_digest``.
    """

    def __init__(self, ours: Timestamper) -> None:
        super().__init__(include_nonce=False)  # type: ignore[no-untyped-call]
        self._ours = ours

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        token = self._ours.timestamp_digest(bytes(message_digest), md_algorithm)
        try:
            parsed = cms.ContentInfo.load(token)
            imprint = parsed["content"]["encap_content_info"]["content"].parsed["message_imprint"]
            stamped = bytes(imprint["hashed_message"].native)
        except (ValueError, TypeError, KeyError) as exc:
            raise TimestampTokenError(f"unreadable time-stamp token: {exc}") from exc
        if stamped != bytes(message_digest):
            raise TimestampTokenError("the time-stamp token stamps another digest")
        return parsed


class _GmCmsPolicy(CMSAlgorithmUsagePolicy):  # type: ignore[misc]
    """Our certificate-path policy lifted to CMS, and SM2 signatures only over SM3 digests.

    pyhanko checks that a signer info's digest matches the one its signature algorithm implies,
    but asn1crypto knows no digest for sm2sign-with-sm3, so that check would let any pass.
    """

    def digest_algorithm_allowed(
        self, algo: algos.DigestAlgorithm, moment: datetime | None
    ) -> AlgorithmUsageConstraint:
        result: AlgorithmUsageConstraint = ALGORITHM_POLICY.digest_algorithm_allowed(algo, moment)
        return result

    def signature_algorithm_allowed(
        self, algo: algos.SignedDigestAlgorithm, moment: datetime | None, public_key: Any
    ) -> AlgorithmUsageConstraint:
        result: AlgorithmUsageConstraint = ALGORITHM_POLICY.signature_algorithm_allowed(
            algo, moment, public_key
        )
        return result

    def digest_combination_allowed(
        self,
        signature_algo: algos.SignedDigestAlgorithm,
        message_digest_algo: algos.DigestAlgorithm,
        moment: datetime | None,
    ) -> AlgorithmUsageConstraint:
        if signature_algo["algorithm"].native in ("sm2_sm3", "sm2"):
            if message_digest_algo["algorithm"].native != "sm3":
                return AlgorithmUsageConstraint(
                    allowed=False, failure_reason="SM2 signatures are made over SM3 digests"
                )
            return AlgorithmUsageConstraint(allowed=True)
        result: AlgorithmUsageConstraint = super().digest_combination_allowed(
            signature_algo, message_digest_algo, moment
        )
        return result


_CMS_POLICY = _GmCmsPolicy()


# --------------------------------------------------------------------------------------------
# Fonts and blank pages


@functools.lru_cache(maxsize=64)
def _font_program(text: str) -> bytes:
    """The CJK font cut down to ``text`` and rescaled to 1000 units per em.

    pyhanko writes glyph widths in font units where PDF wants thousandths of an em; fonts with
    other units per em would get overlapping or gaping glyphs. Cutting it first keeps
    the 4 MB font out of every document and makes the rescaling cheap.
    """
    from fontTools import subset, ttLib  # type: ignore[import-untyped]
    from fontTools.ttLib.scaleUpem import scale_upem  # type: ignore[import-untyped]

    font = ttLib.TTFont(str(fonts.font_path(FONT_PATH)), fontNumber=fonts.FONT_INDEX)
    options = subset.Options()
    options.layout_features = ["*"]
    options.notdef_outline = True
    options.drop_tables += ["FFTM"]  # FontForge's timestamps: nothing to keep, nothing to warn
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text or " ")
    subsetter.subset(font)
    scale_upem(font, 1000)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


@dataclass(frozen=True)
class _CjkFont(FontEngineFactory):  # type: ignore[misc]
    """A font engine factory over :func:`_font_program` for one piece of text."""

    text: str
    font_size: int = 12

    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: Any = None) -> Any:
        return GlyphAccumulator(
            writer=writer,
            font_handle=io.BytesIO(_font_program(self.text)),
            font_size=self.font_size,
            obj_stream=obj_stream,
        )


def blank_pdf(
    text_lines: Sequence[str] = (), *, page_mm: tuple[float, float] = (210, 297)
) -> bytes:
    """A one-page PDF with ``text_lines`` at the top left (Chinese and Latin text render). For
    tests, benchmarks and demos."""
    lines = tuple(str(line) for line in text_lines)
    width, height = (float(v) for v in page_mm)
    if not (10 <= width <= 5000 and 10 <= height <= 5000):
        raise MalformedInputError("page sizes are 10 to 5000 mm")
    return _blank_pdf(lines, (width, height))


@functools.lru_cache(maxsize=16)
def _blank_pdf(lines: tuple[str, ...], page_mm: tuple[float, float]) -> bytes:
    writer = PdfFileWriter(stream_xrefs=False)  # type: ignore[no-untyped-call]
    width, height = page_mm[0] * _PT_PER_MM, page_mm[1] * _PT_PER_MM
    resources = generic.DictionaryObject()  # type: ignore[no-untyped-call]
    body = b""
    if any(line.strip() for line in lines):
        text = "\n".join(lines)
        style = TextBoxStyle(font=_CjkFont("".join(sorted(set(text)))), font_size=12, leading=18)
        box = TextBox(style, writer=writer)
        box.content = text
        rendered = box.render()  # type: ignore[no-untyped-call]
        margin = 25 * _PT_PER_MM
        body = b"q 1 0 0 1 %g %g cm %s Q" % (margin, height - margin - box.box.height, rendered)
        resources = box.resources.as_pdf_object()
    stream = writer.add_object(generic.StreamObject(stream_data=body))
    writer.insert_page(PageObject(stream, [0, 0, width, height], resources))  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Signing


def sign_pdf(
    pdf: bytes,
    key: KeyHandle,
    cert: x509.Certificate,
    *,
    chain: Sequence[x509.Certificate] = (),
    level: Level = "B-B",
    timestamper: Timestamper | None = None,
    stamp: Stamp | None = None,
    field_name: str | None = None,
    reason: str | None = None,
    location: str | None = None,
    revocation: RevocationSource | None = None,
) -> bytes:
    """Sign ``pdf`` as an incremental update (a PAdES signature at ``level``).

    B-T, B-LT and B-LTA need ``timestamper`` (B-LT is B-T plus validation data, as in
    ETSI EN 319 142-1); B-LT and B-LTA need ``revocation`` and a ``chain`` ending at a root.
    ``chain`` (issuing CA up to the root) is embedded in the CMS. Raises
    :class:`MalformedInputError` for a PDF that cannot be read or signed and
    :class:`ConfigurationError` for a missing timestamper or revocation source.
    """
    return run_sync(
        asign_pdf(
            pdf,
            key,
            cert,
            chain=chain,
            level=level,
            timestamper=timestamper,
            stamp=stamp,
            field_name=field_name,
            reason=reason,
            location=location,
            revocation=revocation,
        )
    )


async def asign_pdf(
    pdf: bytes,
    key: KeyHandle,
    cert: x509.Certificate,
    *,
    chain: Sequence[x509.Certificate] = (),
    level: Level = "B-B",
    timestamper: Timestamper | None = None,
    stamp: Stamp | None = None,
    field_name: str | None = None,
    reason: str | None = None,
    location: str | None = None,
    revocation: RevocationSource | None = None,
) -> bytes:
    """:func:`sign_pdf` for callers inside an event loop."""
    if level not in LEVELS:
        raise MalformedInputError(f"unknown PAdES level {level!r}; use one of {', '.join(LEVELS)}")
    if level != "B-B" and timestamper is None:
        raise ConfigurationError(f"PAdES {level} needs a timestamper")
    long_term = level in ("B-LT", "B-LTA")
    if long_term and revocation is None:
        raise ConfigurationError(f"PAdES {level} needs a revocation source")
    if not isinstance(pdf, bytes | bytearray) or len(pdf) > _MAX_PDF:
        raise MalformedInputError(f"a PDF to sign is bytes, at most {_MAX_PDF} of them")
    signer = _signer_for(key, cert, chain)
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(bytes(pdf)), strict=True)
        name = field_name or _free_field_name(writer)
    except (PdfError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise MalformedInputError(f"not a PDF that can be signed: {exc}") from exc
    adapter = _adapter_for(timestamper) if timestamper is not None and level != "B-B" else None
    validation_context = None
    if long_term:
        assert adapter is not None and revocation is not None
        validation_context = await _signing_context(signer, chain, adapter, revocation)
    meta = PdfSignatureMetadata(
        field_name=name,
        md_algorithm=signer.digest_name,
        reason=reason,
        location=location,
        subfilter=SigSeedSubFilter.PADES,
        embed_validation_info=long_term,
        use_pades_lta=level == "B-LTA",
        validation_context=validation_context,
        signer_key_usage={"non_repudiation"},
        # Without a timestamp token the container's size is known: the placeholder signature
        # is the longest the key can make. The spare room would be read back as hex, byte by
        # byte, by every verification.
        tight_size_estimates=level == "B-B",
    )
    field_spec = None
    style = None
    if stamp is not None:
        field_spec, style = _stamp_setup(name, stamp, writer)
    pdf_signer = PdfSigner(
        meta, signer, timestamper=adapter, stamp_style=style, new_field_spec=field_spec
    )
    try:
        out = await pdf_signer.async_sign_pdf(writer)
    except SigningError as exc:
        raise EtrustError(f"the PDF could not be signed: {exc}", code="PDF_SIGNING_FAILED") from exc
    except (PdfError, ValueError, KeyError, IndexError, layout.LayoutError) as exc:
        raise MalformedInputError(f"the PDF could not be signed: {exc}") from exc
    result: bytes = out.getvalue()
    return result


def _free_field_name(writer: IncrementalPdfFileWriter) -> str:
    taken = {name for name, _, _ in enumerate_sig_fields(writer)}
    n = len(taken) + 1
    while f"Signature{n}" in taken:
        n += 1
    return f"Signature{n}"


async def _signing_context(
    signer: _KeySigner,
    chain: Sequence[x509.Certificate],
    adapter: _TsaAdapter,
    revocation: RevocationSource,
) -> ValidationContext:
    """The context pyhanko validates the signer and TSA in before signing, and whose CRLs and
    OCSP responses it writes into the DSS. The chain's own root anchors it: signing checks that
    the data covers the chain; whom to trust is the verifier's business."""
    roots = [c for c in chain if c.self_signed != "no"]
    if not roots:
        raise ConfigurationError("PAdES B-LT needs a chain that ends at a root certificate")
    tsa_token = await adapter.async_dummy_response(signer.digest_name)
    tsa_certs = [c.chosen for c in tsa_token["content"]["certificates"] or ()]
    data = revocation.revocation_for([signer.signing_cert, *chain, *tsa_certs])
    try:
        crls = [crl_of(c) for c in data.crls]
        ocsps = [ocsp_of(o) for o in data.ocsp_responses]
    except EtrustError as exc:
        raise MalformedInputError(f"revocation data: {exc.message}") from exc
    return ValidationContext(
        trust_manager=SimpleTrustManager.build(trust_roots=roots),
        other_certs=[*chain, *tsa_certs],
        crls=crls,
        ocsps=ocsps,
        allow_fetching=False,
        revocation_mode="soft-fail",
        algorithm_usage_policy=ALGORITHM_POLICY,
        signature_validator=SIGNATURE_VALIDATOR,
    )


@dataclass(frozen=True)
class _EncodedImage:
    """An image XObject's dictionary entries and Flate-compressed samples (and its alpha
    channel's): a seal signs thousands of documents with the same picture, so it is decoded
    and compressed once."""

    width: int
    height: int
    colour_space: str
    samples: bytes
    alpha: bytes | None


@functools.lru_cache(maxsize=32)
def _encoded_image(png: bytes) -> _EncodedImage:
    import zlib

    from PIL import Image, UnidentifiedImageError

    image: Image.Image
    try:
        image = Image.open(io.BytesIO(png))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MalformedInputError(f"the stamp is not a readable image: {exc}") from exc
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA")
    alpha = None
    if image.mode.endswith("A"):
        alpha = zlib.compress(image.getchannel("A").tobytes())
        image = image.convert(image.mode[:-1])
    return _EncodedImage(
        image.width,
        image.height,
        "/DeviceGray" if image.mode == "L" else "/DeviceRGB",
        zlib.compress(image.tobytes()),
        alpha,
    )


class _StampImage(PdfImage):  # type: ignore[misc]
    """pyhanko's image content over an :class:`_EncodedImage` (no re-encoding per PDF)."""

    def __init__(self, encoded: _EncodedImage) -> None:
        from PIL import Image

        # pyhanko sizes the box from the image; a 1x1 stand-in of the right size is enough
        super().__init__(
            Image.new("L", (1, 1)), box=layout.BoxConstraints(encoded.width, encoded.height)
        )
        self._encoded = encoded

    @property
    def image_ref(self) -> generic.IndirectObject:
        ref = self._image_ref
        writer = self.writer
        assert writer is not None  # pyhanko sets it before rendering
        if ref is None or ref.get_pdf_handler() is not writer:  # type: ignore[no-untyped-call]
            self._image_ref = ref = _write_image(self._encoded, writer)
        return ref


def _write_image(encoded: _EncodedImage, writer: BasePdfFileWriter) -> generic.IndirectObject:
    def xobject(samples: bytes, colour_space: str, extra: dict[str, Any]) -> Any:
        entries = {
            generic.NameObject("/Type"): generic.NameObject("/XObject"),
            generic.NameObject("/Subtype"): generic.NameObject("/Image"),
            generic.NameObject("/Width"): generic.NumberObject(encoded.width),  # type: ignore[no-untyped-call]
            generic.NameObject("/Height"): generic.NumberObject(encoded.height),  # type: ignore[no-untyped-call]
            generic.NameObject("/BitsPerComponent"): generic.NumberObject(8),  # type: ignore[no-untyped-call]
            generic.NameObject("/ColorSpace"): generic.NameObject(colour_space),
            generic.NameObject("/Filter"): generic.NameObject("/FlateDecode"),
            **extra,
        }
        stream = generic.StreamObject(generic.DictionaryObject(entries), encoded_data=samples)  # type: ignore[no-untyped-call]
        return writer.add_object(stream)  # type: ignore[no-untyped-call]

    extra: dict[str, Any] = {}
    if encoded.alpha is not None:
        extra[generic.NameObject("/SMask")] = xobject(encoded.alpha, "/DeviceGray", {})
    return xobject(encoded.samples, encoded.colour_space, extra)  # type: ignore[no-any-return]


def _stamp_setup(
    field_name: str, stamp: Stamp, writer: IncrementalPdfFileWriter
) -> tuple[SigFieldSpec, Any]:
    x, y, w, h = stamp.box_mm
    if w <= 0 or h <= 0:
        raise MalformedInputError("a stamp box has a positive width and height")
    pages = int(writer.root["/Pages"]["/Count"])
    if not 0 <= stamp.page < pages:
        raise MalformedInputError(f"page {stamp.page} does not exist (the PDF has {pages})")
    box = tuple(round(v * _PT_PER_MM) for v in (x, y, x + w, y + h))
    spec = SigFieldSpec(sig_field_name=field_name, on_page=stamp.page, box=box)  # type: ignore[arg-type]
    background: PdfContent = _StampImage(_encoded_image(stamp.png))
    common: dict[str, Any] = {
        "background": background,
        "background_opacity": 1.0,
        "border_width": 0,
        "background_layout": layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MID,
            margins=layout.Margins.uniform(0),  # type: ignore[no-untyped-call]
            inner_content_scaling=layout.InnerScaling.STRETCH_TO_FIT,
        ),
    }
    if not stamp.text:
        return spec, StaticStampStyle(**common)
    text = stamp.text
    font = _CjkFont("".join(sorted(set(text))), font_size=10)
    return spec, TextStampStyle(
        stamp_text=text.replace("%", "%%"),
        text_box_style=TextBoxStyle(font=font, font_size=10),
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MID,
            margins=layout.Margins.uniform(4),  # type: ignore[no-untyped-call]
            inner_content_scaling=layout.InnerScaling.SHRINK_TO_FIT,
        ),
        **common,
    )


# --------------------------------------------------------------------------------------------
# Verification


def verify_pdf(pdf: bytes, ctx: VerifyContext) -> Report:
    """Verify every signature in ``pdf``: one sub-report per signature field, in signing order.

    Never raises for a bad document: unreadable bytes give FORMAT_FAILURE, a PDF without
    signatures NO_SIGNATURE. Document timestamps (B-LTA) are checked at document level.
    """
    return run_sync(averify_pdf(pdf, ctx))


async def averify_pdf(pdf: bytes, ctx: VerifyContext) -> Report:
    """:func:`verify_pdf` for callers inside an event loop."""
    try:
        return await _verify(pdf, ctx)
    except Exception as exc:  # a bug must not become a verdict, nor an exception
        log.exception("PDF verification failed unexpectedly")
        return report(
            FORMAT,
            "INTERNAL",
            checks=[check("internal", "indeterminate", f"unexpected {type(exc).__name__}")],
        )


@dataclass
class _Dss:
    certs: list[x509.Certificate]
    crls: list[crl.CertificateList]
    ocsps: list[ocsp.OCSPResponse]
    problem: str | None = None


async def _verify(pdf: bytes, ctx: VerifyContext) -> Report:
    if not isinstance(pdf, bytes | bytearray) or len(pdf) > _MAX_PDF:
        return report(
            FORMAT,
            "FORMAT_FAILURE",
            "Not a PDF of a size we read.",
            checks=[check("pdf.parse", "failed", "not bytes or too large")],
        )
    try:
        reader = PdfFileReader(io.BytesIO(bytes(pdf)), strict=True)
        fields = list(enumerate_sig_fields(reader, filled_status=True))
        revisions = reader.xrefs.total_revisions
    except Exception as exc:  # pyhanko raises many kinds for broken files
        detail = f"not a readable PDF ({type(exc).__name__}: {exc})"
        return report(
            FORMAT, "FORMAT_FAILURE", detail, checks=[check("pdf.parse", "failed", detail)]
        )
    parse = check(
        "pdf.parse", "passed", f"{revisions} revision(s), {len(fields)} signature field(s)"
    )
    dss = _read_dss(reader)
    signatures: list[tuple[str, EmbeddedPdfSignature | None, str]] = []
    for name, _, field_ref in fields:
        try:
            signatures.append((name, EmbeddedPdfSignature(reader, field_ref, name), ""))
        except Exception as exc:
            signatures.append((name, None, f"{type(exc).__name__}: {exc}"))

    doc_checks: list[Check] = [parse]
    findings: list[tuple[str, str]] = []
    if dss.problem:
        doc_checks.append(check("pdf.dss", "indeterminate", dss.problem))
    doc_timestamps: list[tuple[int, bool]] = []  # (revision, passed)
    for name, emb, _ in signatures:
        if emb is None or emb.sig_object_type != "/DocTimeStamp":
            continue
        ts_reason, ts_check = await _document_timestamp(emb, ctx, dss)
        doc_checks.append(ts_check)
        doc_timestamps.append((emb.signed_revision, ts_reason == "OK"))
        if ts_reason != "OK":
            findings.append((ts_reason, f"document timestamp {name}: {ts_check['detail']}"))

    subs: list[Report] = []
    for name, emb, problem in signatures:
        if emb is None:
            detail = f"signature field {name!r}: unreadable signature ({problem})"
            subs.append(
                report(
                    FORMAT,
                    "FORMAT_FAILURE",
                    detail,
                    checks=[check("pdf.parse", "failed", detail)],
                    details={"field": name},
                )
            )
        elif emb.sig_object_type == "/Sig":
            subs.append(await _verify_signature(emb, ctx, dss, doc_timestamps))
    if not subs and any(emb is not None for _, emb, _ in signatures):
        findings.append(("NO_SIGNATURE", "only document timestamps, no signature"))
    return combine(
        FORMAT,
        subs,
        checks=doc_checks,
        findings=findings,
        details={"revisions": revisions, "document_timestamps": len(doc_timestamps)},
    )


def _read_dss(reader: PdfFileReader) -> _Dss:
    """The DSS's certificates, CRLs and OCSP answers, each parsed by our (cached) parsers."""
    dss = _Dss([], [], [])
    try:
        dss_dict = reader.root.get("/DSS")
        if dss_dict is None:
            return dss
        dss_dict = dss_dict.get_object()
        for key, parse, into in (
            ("/Certs", lambda der: certificate_of(der, "DSS certificate"), dss.certs),
            ("/CRLs", crl_of, dss.crls),
            ("/OCSPs", ocsp_of, dss.ocsps),
        ):
            for ref in dss_dict.get(key, ()):
                into.append(parse(ref.get_object().data))  # type: ignore[operator, no-untyped-call]
    except Exception as exc:
        dss.problem = f"the DSS is unreadable ({type(exc).__name__}: {exc}); not used"
        dss.certs, dss.crls, dss.ocsps = [], [], []
    return dss


def _validation_context(
    ctx: VerifyContext, dss: _Dss, extra: Iterable[x509.Certificate]
) -> ValidationContext:
    """certvalidator's context for one signature: our anchors, CRLs and OCSP answers given with
    the context and found in the DSS, our signature validator and algorithm policy.

    Without trust anchors the context trusts nothing (pyhanko would otherwise fall back to the
    operating system's roots): the signature's integrity is still checked.
    """
    extra_certs = [*dss.certs, *extra]
    crls = [*(crl_of(c) for c in ctx.crls), *dss.crls]
    ocsps = [*(ocsp_of(o) for o in ctx.ocsp_responses), *dss.ocsps]
    moment = ctx.now()
    if ctx.trust is None:
        return ValidationContext(
            trust_manager=SimpleTrustManager.build(trust_roots=[]),
            other_certs=extra_certs,
            moment=moment,
            allow_fetching=False,
            revocation_mode="soft-fail",
            algorithm_usage_policy=ALGORITHM_POLICY,
            signature_validator=SIGNATURE_VALIDATOR,
        )
    return ctx.trust.context_for(
        extra_certs, crls=crls, ocsps=ocsps, moment=moment, revocation=ctx.revocation
    )


async def _verify_signature(
    emb: EmbeddedPdfSignature,
    ctx: VerifyContext,
    dss: _Dss,
    doc_timestamps: list[tuple[int, bool]],
) -> Report:
    name = emb.field_name
    details: dict[str, Any] = {"field": name, "revision": emb.signed_revision + 1}
    checks: list[Check] = [check("pdf.parse", "passed", f"signature field {name!r}")]
    try:
        vc = _validation_context(ctx, dss, emb.other_embedded_certs)
        details["signer"] = describe_name(emb.signer_cert.subject)
        token = validator_in_use.set(SIGNATURE_VALIDATOR)  # see trust.validation
        try:
            status: PdfSignatureStatus = await async_validate_pdf_signature(
                emb, signer_validation_context=vc, algorithm_policy=_CMS_POLICY
            )
        finally:
            validator_in_use.reset(token)
    except (SignatureValidationError, EtrustError, ValueError, TypeError, KeyError) as exc:
        return _broken_signature(exc, checks, details)

    details.update(
        {
            "digest_algorithm": status.md_algorithm,
            "signature_algorithm": status.pkcs7_signature_mechanism,
            "signing_time": _iso(status.signer_reported_dt),
        }
    )
    sub: list[tuple[str, str]] = []  # (reason, detail) of what failed, worst first by verdict

    # Integrity: the byte range digest and the later revisions
    if status.intact:
        checks.append(
            check(
                "pdf.digest", "passed", f"{status.md_algorithm} digest of the signed bytes matches"
            )
        )
    else:
        detail = "the signed bytes do not match the signature's digest"
        checks.append(check("pdf.digest", "failed", detail))
        sub.append(("HASH_FAILURE", detail))
    coverage_check, coverage_ok, coverage_text = _coverage(status, emb)
    checks.append(coverage_check)
    details["coverage"] = coverage_text
    if not coverage_ok:
        sub.append(("HASH_FAILURE", coverage_check["detail"]))

    if status.valid:
        checks.append(
            check(
                "pdf.signature", "passed", f"{status.pkcs7_signature_mechanism} signature verifies"
            )
        )
    else:
        detail = f"the {status.pkcs7_signature_mechanism} signature does not verify"
        checks.append(check("pdf.signature", "failed", detail))
        sub.append(("SIG_CRYPTO_FAILURE", detail))

    # Chain
    signer_pool = emb.other_embedded_certs
    if status.valid:
        signer_reason, chain_check = await _chain(status, ctx, dss, signer_pool, "signer.chain")
    else:
        signer_reason = "SIG_CRYPTO_FAILURE"
        chain_check = check("signer.chain", "skipped", "not checked: the signature does not verify")
    checks.append(chain_check)
    if signer_reason not in ("OK", "SIG_CRYPTO_FAILURE"):
        sub.append((signer_reason, chain_check["detail"]))
    if signer_reason == "OK":
        details["path"] = [describe_name(c.subject) for c in _path_certs(status)]

    # Signature timestamp
    tst = status.timestamp_validity
    has_timestamp = False
    if tst is None:
        checks.append(check("timestamp", "skipped", "no signature timestamp"))
    else:
        details["timestamp"] = _iso(tst.timestamp)
        ts_reason, ts_check = await _timestamp_check(
            tst, ctx, dss, _token_certificates(emb.signer_info), "timestamp"
        )
        checks.append(ts_check)
        has_timestamp = ts_reason == "OK"
        if ts_reason != "OK":
            sub.append((ts_reason, ts_check["detail"]))
        elif signer_reason in _PAST_VALIDATION_REASONS:
            past_reason, past_check = await _chain_at_timestamp(
                status.signing_cert, tst.timestamp, ctx, dss, signer_pool
            )
            if past_reason == "OK":  # the timestamp proves it was signed while valid
                checks[checks.index(chain_check)] = past_check
                sub = [item for item in sub if item != (signer_reason, chain_check["detail"])]

    level = _level(emb, status, dss, has_timestamp, doc_timestamps)
    details["level"] = level
    checks.append(check("pdf.level", "passed", f"PAdES {level}"))

    if not sub:
        return report(FORMAT, "OK", checks=checks, details=details)
    rank = {"FAILED": 0, "INDETERMINATE": 1, "PASSED": 2}
    reason, detail = min(sub, key=lambda item: rank[REASONS[item[0]].verdict])
    return report(FORMAT, reason, detail, checks=checks, details=details)


def _broken_signature(exc: Exception, checks: list[Check], details: dict[str, Any]) -> Report:
    """A signature pyhanko refused outright (bad SubFilter, content type, CMS structure)."""
    if isinstance(exc, SignatureValidationError):
        sub = exc.ades_subindication
        detail = exc.failure_message
    else:
        sub, detail = AdESFailure.FORMAT_FAILURE, f"{type(exc).__name__}: {exc}"
    reasons: dict[AdESSubIndic, str] = {
        AdESFailure.FORMAT_FAILURE: "FORMAT_FAILURE",
        AdESFailure.HASH_FAILURE: "HASH_FAILURE",
        AdESFailure.SIG_CRYPTO_FAILURE: "SIG_CRYPTO_FAILURE",
    }
    reason = reasons.get(sub, "FORMAT_FAILURE")
    name = "pdf.signature" if reason == "SIG_CRYPTO_FAILURE" else "pdf.parse"
    if isinstance(sub, AdESIndeterminate) and sub is AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND:
        reason, name = "NO_CERTIFICATE_CHAIN_FOUND", "signer.chain"
    checks = [c for c in checks if c["name"] != name]
    checks.append(
        check(name, "indeterminate" if reason == "NO_CERTIFICATE_CHAIN_FOUND" else "failed", detail)
    )
    return report(FORMAT, reason, detail, checks=checks, details=details)


def _coverage(status: PdfSignatureStatus, emb: EmbeddedPdfSignature) -> tuple[Check, bool, str]:
    coverage = status.coverage
    if coverage == SignatureCoverageLevel.ENTIRE_FILE:
        return (
            check("pdf.coverage", "passed", "the signature covers the whole file"),
            True,
            "entire file",
        )
    total = emb.reader.xrefs.total_revisions
    if coverage != SignatureCoverageLevel.ENTIRE_REVISION:
        detail = "the signed byte range is not a whole revision of the file"
        return check("pdf.coverage", "failed", detail), False, "unclear"
    diff = status.diff_result
    level = getattr(diff, "modification_level", None)
    text = f"revision {emb.signed_revision + 1} of {total}"
    if status.docmdp_ok and level is not None:
        detail = (
            f"the signature covers {text}; the later updates are allowed "
            f"({_MODIFICATIONS.get(level, level.name)})"
        )
        return check("pdf.coverage", "passed", detail), True, text
    why = getattr(diff, "args", None) or ()
    detail = f"the signature covers {text}; a later update changes signed content"
    if why:
        detail += f" ({why[0]})"
    return check("pdf.coverage", "failed", detail), False, text


_MODIFICATIONS = {
    ModificationLevel.NONE: "no changes",
    ModificationLevel.LTA_UPDATES: "validation data and document timestamps",
    ModificationLevel.FORM_FILLING: "form filling and further signatures",
    ModificationLevel.ANNOTATIONS: "annotations",
}


_PAST_VALIDATION_REASONS = ("EXPIRED", "REVOCATION_UNKNOWN")
"""Chain verdicts at the verification time that a trusted timestamp may overturn: a certificate
expired since, or revocation data newer than the signature."""


async def _chain_at_timestamp(
    cert: x509.Certificate,
    moment: datetime,
    ctx: VerifyContext,
    dss: _Dss,
    pool: Sequence[x509.Certificate],
) -> tuple[str, Check]:
    """The signer's chain at the timestamp's time, with revocation data published since
    (a verified timestamp proves the moment; see trust.validation.validate_chain)."""
    assert ctx.trust is not None
    ours = await avalidate_chain(
        cert,
        trust_roots=ctx.trust,
        intermediates=[*pool, *dss.certs],
        crls=[*ctx.crls, *dss.crls],
        ocsp_responses=[*ctx.ocsp_responses, *dss.ocsps],
        at=moment,
        revocation=ctx.revocation,
        retroactive_revocation=True,
    )
    detail = f"valid at the timestamp's time {moment.isoformat()} (past validation)"
    result: Literal["passed", "failed", "indeterminate"] = (
        "passed" if ours.passed else "failed" if ours.verdict == "FAILED" else "indeterminate"
    )
    return chain_reason(ours), check(
        "signer.chain", result, detail if ours.passed else ours.message
    )


async def _chain(
    status: Any, ctx: VerifyContext, dss: _Dss, pool: Sequence[x509.Certificate], name: str
) -> tuple[str, Check]:
    """pyhanko's trust verdict on a signer (or TSA) as our reason code and a check."""
    if ctx.trust is None:
        return "NO_CERTIFICATE_CHAIN_FOUND", check(
            name, "indeterminate", "no trust anchors were given"
        )
    indic: AdESSubIndic | None = status.trust_problem_indic
    if indic is None and status.validation_path is not None:
        certs = _path_certs(status)
        return "OK", check(
            name,
            "passed",
            f"{len(certs)} certificates up to {describe_name(certs[-1].subject)!r}, "
            f"valid at {ctx.now().isoformat()}",
        )
    reason = _ADES_REASONS.get(indic) if indic is not None else None
    detail = indic.standard_name if indic is not None else "the chain is not trusted"
    if reason is None:
        # pyhanko folds many failures (missing revocation data, a bad CA signature, ...)
        # into CERTIFICATE_CHAIN_GENERAL_FAILURE and only logs the cause: our validator,
        # given the same data, names it.
        reason, detail = await _explain_chain(status.signing_cert, ctx, dss, pool, detail)
    if status.revocation_details is not None:
        detail += f" (revoked {status.revocation_details.revocation_date.isoformat()})"
    result: Literal["failed", "indeterminate"] = (
        "indeterminate" if REASONS[reason].verdict == "INDETERMINATE" else "failed"
    )
    return reason, check(name, result, detail)


async def _explain_chain(
    cert: x509.Certificate,
    ctx: VerifyContext,
    dss: _Dss,
    pool: Sequence[x509.Certificate],
    fallback: str,
) -> tuple[str, str]:
    assert ctx.trust is not None
    ours = await avalidate_chain(
        cert,
        trust_roots=ctx.trust,
        intermediates=[*pool, *dss.certs],
        crls=[*ctx.crls, *dss.crls],
        ocsp_responses=[*ctx.ocsp_responses, *dss.ocsps],
        at=ctx.now(),
        revocation=ctx.revocation,
    )
    if ours.passed:  # e.g. a key usage pyhanko requires and path validation does not check
        return "CHAIN_CONSTRAINTS_FAILURE", f"{fallback} (the path itself validates)"
    return chain_reason(ours), ours.message


_ADES_REASONS: dict[AdESSubIndic, str] = {
    AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND: "NO_CERTIFICATE_CHAIN_FOUND",
    AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND: "NO_CERTIFICATE_CHAIN_FOUND",
    AdESFailure.REVOKED: "REVOKED",
    AdESIndeterminate.REVOKED_NO_POE: "REVOKED",
    AdESIndeterminate.REVOKED_CA_NO_POE: "REVOKED",
    AdESIndeterminate.EXPIRED: "EXPIRED",
    AdESIndeterminate.OUT_OF_BOUNDS_NO_POE: "EXPIRED",
    AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED: "EXPIRED",
    AdESFailure.NOT_YET_VALID: "NOT_YET_VALID",
    AdESIndeterminate.NOT_YET_VALID: "NOT_YET_VALID",
    AdESIndeterminate.TRY_LATER: "REVOCATION_UNKNOWN",
    AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE: "REVOCATION_UNKNOWN",
    AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE: "CRYPTO_CONSTRAINTS_FAILURE",
    AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE: "CRYPTO_CONSTRAINTS_FAILURE",
    AdESIndeterminate.CHAIN_CONSTRAINTS_FAILURE: "CHAIN_CONSTRAINTS_FAILURE",
    AdESIndeterminate.SIG_CONSTRAINTS_FAILURE: "CHAIN_CONSTRAINTS_FAILURE",
}


async def _timestamp_check(
    status: Any, ctx: VerifyContext, dss: _Dss, pool: Sequence[x509.Certificate], name: str
) -> tuple[str, Check]:
    """A timestamp token's reason and check: TIMESTAMP_INVALID when it does not verify or its
    TSA is shown untrustworthy; an undecided TSA chain (no revocation data) stays undecided."""
    when = _iso(getattr(status, "timestamp", None))
    if not status.intact or not status.valid:
        return "TIMESTAMP_INVALID", check(name, "failed", f"the token of {when} does not verify")
    reason, chain_check = await _chain(status, ctx, dss, pool, name)
    if reason == "OK":
        return "OK", check(name, "passed", f"genTime {when} ({status.md_algorithm})")
    detail = f"the TSA of the {when} timestamp: {chain_check['detail']}"
    if REASONS[reason].verdict == "INDETERMINATE":
        return reason, check(name, "indeterminate", detail)
    return "TIMESTAMP_INVALID", check(name, "failed", detail)


async def _document_timestamp(
    emb: EmbeddedPdfSignature, ctx: VerifyContext, dss: _Dss
) -> tuple[str, Check]:
    """A document timestamp (B-LTA): its token, and that later updates only add what B-LTA
    allows (validation data, further timestamps and signatures)."""
    name = f"timestamp.document {emb.field_name}"
    try:
        vc = _validation_context(ctx, dss, emb.other_embedded_certs)
        token = validator_in_use.set(SIGNATURE_VALIDATOR)
        try:
            status: DocumentTimestampStatus = await async_validate_pdf_timestamp(
                emb, validation_context=vc
            )
        finally:
            validator_in_use.reset(token)
    except (SignatureValidationError, EtrustError, ValueError, TypeError, KeyError) as exc:
        return "TIMESTAMP_INVALID", check(name, "failed", f"unreadable document timestamp ({exc})")
    reason, ts_check = await _timestamp_check(status, ctx, dss, emb.other_embedded_certs, name)
    covered = status.coverage == SignatureCoverageLevel.ENTIRE_FILE or (
        status.coverage == SignatureCoverageLevel.ENTIRE_REVISION
        and getattr(status.diff_result, "modification_level", ModificationLevel.OTHER)
        in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES, ModificationLevel.FORM_FILLING)
    )
    if not covered:
        detail = "a later update changes what the document timestamp covers"
        return "HASH_FAILURE", check(name, "failed", detail)
    return reason, ts_check


def _token_certificates(signer_info: cms.SignerInfo) -> list[x509.Certificate]:
    """The certificates inside a signature's timestamp token (the TSA's, usually its chain)."""
    out: list[x509.Certificate] = []
    try:
        for attr in signer_info["unsigned_attrs"] or ():
            if attr["type"].native == "signature_time_stamp_token":
                for token in attr["values"]:
                    for choice in token["content"]["certificates"] or ():
                        if choice.name == "certificate":
                            out.append(choice.chosen)
    except (ValueError, TypeError, KeyError):
        pass
    return out


def _level(
    emb: EmbeddedPdfSignature,
    status: PdfSignatureStatus,
    dss: _Dss,
    has_timestamp: bool,
    doc_timestamps: list[tuple[int, bool]],
) -> Level:
    """The PAdES baseline level this signature reaches (ETSI EN 319 142-1): B-T with a valid
    signature timestamp, B-LT when the DSS also holds revocation data for every certificate
    below the root, B-LTA when a valid document timestamp of a later revision covers that."""
    if not has_timestamp:
        return "B-B"
    certs = [emb.signer_cert, *emb.other_embedded_certs, *dss.certs]
    if not _dss_covers(emb.signer_cert, certs, dss):
        return "B-T"
    if any(rev > emb.signed_revision and passed for rev, passed in doc_timestamps):
        return "B-LTA"
    return "B-LT"


def _dss_covers(leaf: x509.Certificate, pool: list[x509.Certificate], dss: _Dss) -> bool:
    """Whether the DSS holds a CRL or OCSP answer for ``leaf`` and each CA above it, up to a
    self-signed certificate (found by name in ``pool``)."""
    crl_issuers = {c.issuer.dump() for c in dss.crls}
    ocsp_serials: set[tuple[bytes, int]] = set()
    for response in dss.ocsps:
        try:
            basic = response["response_bytes"]["response"].parsed
            for single in basic["tbs_response_data"]["responses"]:
                cert_id = single["cert_id"]
                ocsp_serials.add(
                    (
                        bytes(cert_id["issuer_name_hash"].native),
                        int(cert_id["serial_number"].native),
                    )
                )
        except (ValueError, TypeError, KeyError):
            continue
    cert = leaf
    for _ in range(8):
        if cert.self_signed != "no":
            return True
        if cert.issuer.dump() not in crl_issuers and not any(
            serial == cert.serial_number for _, serial in ocsp_serials
        ):
            return False
        issuer = next((c for c in pool if c.subject.dump() == cert.issuer.dump()), None)
        if issuer is None:
            return False
        cert = issuer
    return False


def _path_certs(status: PdfSignatureStatus) -> list[x509.Certificate]:
    """The validated path, leaf first."""
    path = status.validation_path
    return list(reversed(list(path.iter_certs(include_root=True)))) if path is not None else []


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
