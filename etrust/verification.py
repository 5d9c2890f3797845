"""License codes verified against this home: its trust list (made and signed here), the
registry's live statuses, and QR codes read from images (zxing-cpp)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from etrust.pki import LOG_IDENTITY
from etrust.qr_keys import KEY_SPECS, department_identities, key_id_of, revocation_of
from etrust.runtime import Runtime
from etrust.seals import SealStore
from license_store.models import LicenseRow
from license_store.records import today
from license_store.registry import Registry
from trust.certificates import load_certificate
from trust.clock import system_clock
from trust.errors import (
    ConfigurationError,
    InputTooLargeError,
    MalformedInputError,
    ServiceBusyError,
)
from verify_app.code_check import CodeChecker, Status
from verify_app.trust_list import QrKeyEntry, build_trust_list, read_trust_list

RECHECK_SECONDS = 5.0
"""How long a built trust list is served before the keys and seals behind it are looked at
again (a new department key shows within seconds; checks do not query for it each time)."""
REBUILD_SECONDS = 24 * 3600.0
"""A trust list is re-signed daily even when nothing in it changed (it is valid a week)."""
MAX_IMAGE = 10 << 20
"""A photo of a QR code from a phone; anything larger is not a scan."""
MAX_PIXELS = 16_000_000
"""A phone's photo; a 40 MP frame decoded in colour took 700 MB."""
_DECODING = threading.BoundedSemaphore(2)
"""Photos decoded at once per process: each may take a few hundred MB and a core."""


def trust_list_bytes(rt: Runtime, *, recheck: bool = False) -> bytes:
    """The home's signed trust list as it stands (rebuilt when a QR key or seal appeared or
    changed state: the cache key is what goes into it)."""
    cache: dict[str, object] = rt.__dict__.setdefault("_trust_list", {})
    now = time.monotonic()
    with _LOCK:
        if not recheck and "bytes" in cache and now < cache["fresh_until"]:  # type: ignore[operator]
            return cache["bytes"]  # type: ignore[return-value]
    state = _published_state(rt)
    with _LOCK:
        if cache.get("state") == state and now < cache.get("rebuild_at", 0.0):  # type: ignore[operator]
            cache["fresh_until"] = now + RECHECK_SECONDS
            return cache["bytes"]  # type: ignore[return-value]
    data = _build(rt)
    with _LOCK:
        cache["state"], cache["bytes"] = state, data
        cache["fresh_until"] = now + RECHECK_SECONDS
        cache["rebuild_at"] = now + REBUILD_SECONDS
    return data


_LOCK = threading.Lock()


def checker(rt: Runtime, *, recheck: bool = False) -> CodeChecker:
    """A checker over the current trust list (kept while the list is unchanged); ``recheck``
    looks at the keys behind it now rather than within the next few seconds."""
    data = trust_list_bytes(rt, recheck=recheck)
    cached: CodeChecker | None = rt.__dict__.get("_code_checker")
    if cached is None or cached.trust_list.raw != data:
        cached = CodeChecker(read_trust_list(data, anchors=None), authoritative=True)
        rt.__dict__["_code_checker"] = cached
    return cached


def _published_state(rt: Runtime) -> tuple[object, ...]:
    qr = tuple(
        sorted(
            (i.name, revocation_of(rt, i) is not None)
            for i in rt.identities.list()
            if i.purpose == "qr"
        )
    )
    seals = tuple((s.es_id, s.status) for s in SealStore(rt.sessions).list())
    types = tuple((t.code, tuple(i)) for t, i in Registry(rt.sessions).license_types())
    return qr, seals, types


def _build(rt: Runtime) -> bytes:
    identity = rt.identities.get(LOG_IDENTITY)
    if identity is None:
        raise ConfigurationError("no publication key (log-sm2): run etrust init")
    pki = rt.pki()
    roots = [ca.certificate for name, ca in pki.cas.items() if pki.parents.get(name) is None]
    intermediates = [ca.certificate for name, ca in pki.cas.items() if pki.parents.get(name)]
    entries = []
    registry = Registry(rt.sessions)
    issued_types: dict[str, list[str]] = {}
    for license_type, issuers in registry.license_types():
        for department in issuers:
            issued_types.setdefault(department, []).append(license_type.code)
    identities = rt.identities.list()
    for dept in registry.departments():
        for alg in KEY_SPECS:
            for qr in department_identities(rt, dept.code, alg, identities):
                certificate = load_certificate(qr.certificate_der)
                revoked = revocation_of(rt, qr)
                entries.append(
                    QrKeyEntry(
                        key_id_of(certificate.public_key.dump()).hex(),
                        dept.code,
                        dept.name,
                        dept.uscc,
                        qr.certificate_der,
                        withdrawn_at=revoked.revoked_at.isoformat() if revoked else None,
                        withdrawn_reason=revoked.reason if revoked else None,
                        type_codes=tuple(issued_types.get(dept.code, ())),
                    )
                )
    seals = [
        {"es_id": s.es_id, "department": s.department, "alg": s.alg, "status": s.status}
        for s in SealStore(rt.sessions).list()
    ]
    now = system_clock()
    return build_trust_list(
        number=int(now.timestamp()),
        issued_at=now,
        roots=roots,
        intermediates=intermediates,
        qr_keys=entries,
        seals=seals,
        status_list_url=f"{rt.settings.base_url.rstrip('/')}/api/v1/status-list",
        verify_urls=[f"{rt.settings.base_url.rstrip('/')}/v"],
        signer_key=rt.keys.find(identity.key_uri),
        signer_certificate=load_certificate(identity.certificate_der),
    )


_STATUS_QUERY = select(LicenseRow.status, LicenseRow.valid_from, LicenseRow.valid_to).where(
    LicenseRow.identifier == bindparam("identifier")
)


@dataclass(frozen=True)
class RegistryStatus:
    """Live statuses from the registry (what the window sees online)."""

    rt: Runtime

    def status_of(self, identifier: str) -> Status | None:
        now = system_clock()
        with self.rt.engine.connect() as connection:  # one read: no ORM session needed
            row = connection.execute(_STATUS_QUERY, {"identifier": identifier}).first()
        if row is None:
            return Status("not_found", now, "online")
        status, valid_from, valid_to = row
        day = today(now)
        if status == "valid" and valid_to is not None and day > valid_to:
            status = "expired"
        elif status == "valid" and day < valid_from:
            status = "not_yet_valid"
        return Status(status, now, "online")


def decode_image(data: bytes) -> list[str]:
    """The texts of the QR codes in an image (a photo or a screenshot)."""
    import io

    import zxingcpp
    from PIL import Image

    if len(data) > MAX_IMAGE:
        raise InputTooLargeError(f"an image is at most {MAX_IMAGE >> 20} MB")
    if not _DECODING.acquire(timeout=10):
        raise ServiceBusyError("too many photos are being read; try again in a moment")
    try:
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise InputTooLargeError(
                    f"a photo has at most {MAX_PIXELS // 1_000_000} million pixels"
                )
            image.draft("L", (image.width, image.height))  # JPEG: decode straight to grey
            grey = image.convert("L")  # one byte a pixel, whatever the file held
        except InputTooLargeError:
            raise
        except Exception as exc:  # Pillow raises many types on hostile files
            raise MalformedInputError("this is not an image we can read") from exc
        found = zxingcpp.read_barcodes(grey, formats=zxingcpp.barcode_formats_from_str("QRCode"))
        return [r.text for r in found if r.valid]
    finally:
        _DECODING.release()
