"""``POST /api/v1/verify``: one entry for everything a window or a citizen has — a scanned
code (JSON), a photo of one or a signed document (upload) — answered with a three-state verdict
and recorded (who, when, which license, verdict)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from etrust.api import authenticated
from etrust.api_presentation import presentation_service
from etrust.pki_routes import ServicesDep
from etrust.services import Services
from etrust.verification import RegistryStatus, checker, decode_image
from signing import license_qr
from signing.verifier import MAX_DOCUMENT, detect_format, license_identifier, verify_document
from storage.engine import transaction
from trust.clock import system_clock
from trust.errors import InputTooLargeError, MalformedInputError
from verify_app.code_check import REASONS, STATUS_REASONS, VERDICT_ZH, Verdict, result_for
from verify_app.models import VerificationCheckRow
from verify_app.presentation import check_presentation, is_presentation

router = APIRouter(prefix="/api/v1", tags=["verification"])
log = logging.getLogger("etrust.verify")

VERIFY_PATH = "/api/v1/verify"
MAX_UPLOAD = MAX_DOCUMENT
Channel = Literal["api", "window", "citizen"]
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF")
_DOCUMENT_VERDICTS: dict[str, Verdict] = {
    "PASSED": "valid",
    "FAILED": "invalid",
    "INDETERMINATE": "unknown",
}


class VerifyIn(BaseModel):
    code: str = Field(max_length=2000, description="the code as scanned (URL or fragment)")
    holder_code: str | None = Field(None, max_length=64, description="the ID card's number")
    channel: Channel = "api"


@router.post(
    "/verify",
    summary="Verify a license code, a photo of one, or a signed document",
    description=(
        "JSON `{code, holder_code?, channel?}`, or multipart with a `file` (PNG/JPEG photo of a "
        "QR code, or an OFD, PDF, .esl, SignedValue.dat or CMS) and optional `holder_code`, "
        "`channel`. No token needed; a clerk's token records who checked."
    ),
)
async def verify(request: Request, response: Response, services: ServicesDep) -> dict[str, Any]:
    response.headers["Cache-Control"] = "no-store"  # answers about people stay out of caches
    actor = "public"
    if request.headers.get("authorization"):
        client = await run_in_threadpool(
            authenticated, request, request.headers.get("authorization")
        )
        actor = f"api:{client.name}"
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise MalformedInputError("send the photo or the document as the form field 'file'")
        data = await upload.read(MAX_UPLOAD + 1)
        holder = form.get("holder_code")
        channel = _channel(form.get("channel"))
        return await run_in_threadpool(
            _check_upload,
            services,
            data,
            holder if isinstance(holder, str) and holder else None,
            channel,
            actor,
        )
    try:
        body = VerifyIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise MalformedInputError(
            "send JSON {code, holder_code?, channel?} or a multipart upload"
        ) from exc
    return await run_in_threadpool(
        _check_code, services, body.code, body.holder_code, body.channel, actor, "code"
    )


def _channel(value: object) -> Channel:
    if value in (None, "", "api"):
        return "api"
    if value in ("window", "citizen"):
        return value  # type: ignore[return-value]
    raise MalformedInputError("channel is api, window or citizen")


def _check_code(
    services: Services,
    text: str,
    holder_code: str | None,
    channel: Channel,
    actor: str,
    kind: str,
) -> dict[str, Any]:
    rt = services.runtime
    now = system_clock()
    if is_presentation(text):
        kind = "presentation"
        if actor == "public":  # a bystander's phone must not spend a holder's one-time code
            result = result_for("PRESENTATION_AT_WINDOW", checked_at=now)
        else:
            result = check_presentation(presentation_service(rt), text, holder_code, actor, now)
    else:
        result = checker(rt).check(
            text, now=now, status=RegistryStatus(rt), holder_code=holder_code
        )
        if result.reason == "KEY_NOT_OURS":  # perhaps a key made since the list was built
            result = checker(rt, recheck=True).check(
                text, now=now, status=RegistryStatus(rt), holder_code=holder_code
            )
    answer = {"kind": kind, **result.to_dict()}
    _record(
        services,
        now,
        actor,
        channel,
        kind,
        result.license.get("identifier"),
        result.verdict,
        result.reason,
    )
    return answer


def _check_upload(
    services: Services, data: bytes, holder_code: str | None, channel: Channel, actor: str
) -> dict[str, Any]:
    if len(data) > MAX_UPLOAD:
        raise InputTooLargeError(f"an upload is at most {MAX_UPLOAD >> 20} MB")
    if data.startswith(_IMAGE_MAGIC):
        texts = decode_image(data)
        if not texts:
            return _refusal(
                services, actor, channel, "image", "NO_CODE_FOUND", "图片中没有找到二维码"
            )
        return _check_code(services, _license_text(texts), holder_code, channel, actor, "image")
    kind = detect_format(data)
    if kind == "unknown":
        return _refusal(
            services,
            actor,
            channel,
            "document",
            "UNSUPPORTED_FORMAT",
            "无法识别的文件类型，不能验证",
        )
    report = verify_document(data, services.verify_context(), kind=kind)
    verdict = _DOCUMENT_VERDICTS[report.verdict]
    reason, message_zh = report.reason, report.message_zh
    answer: dict[str, Any] = {}
    identifier = license_identifier(data, kind) if verdict == "valid" else None
    if identifier is not None:
        # A genuine license document may be of a license since revoked or superseded: the
        # signature says the file is intact, the registry says whether it still counts.
        status = RegistryStatus(services.runtime).status_of(identifier)
        answer["license"] = {"identifier": identifier}
        if status is not None:
            answer["status"] = {
                "status": status.status,
                "as_of": status.as_of.isoformat(),
                "source": status.source,
            }
            if status.status != "valid":
                verdict, reason = "invalid", STATUS_REASONS.get(status.status, "STATUS_UNKNOWN")
                message_zh = f"{REASONS[reason][1]}（文件签章完整）"
    _record(services, system_clock(), actor, channel, "document", identifier, verdict, reason)
    return {
        "kind": "document",
        "verdict": verdict,
        "verdict_zh": VERDICT_ZH[verdict],
        "reason": reason,
        "message_zh": message_zh,
        **answer,
        "report": report.to_dict(),
    }


def _license_text(texts: list[str]) -> str:
    """Of the QR codes in a photo (a license beside a poster, say), the first that is one of
    ours, else the first."""
    for text in texts:
        if is_presentation(text):
            return text
        try:
            license_qr.from_text(text)
        except MalformedInputError:
            continue
        return text
    return texts[0]


def _refusal(
    services: Services, actor: str, channel: Channel, kind: str, reason: str, message_zh: str
) -> dict[str, Any]:
    _record(services, system_clock(), actor, channel, kind, None, "invalid", reason)
    return {
        "kind": kind,
        "verdict": "invalid",
        "verdict_zh": VERDICT_ZH["invalid"],
        "reason": reason,
        "message_zh": message_zh,
    }


def _record(
    services: Services,
    at: datetime,
    actor: str,
    channel: Channel,
    kind: str,
    identifier: str | None,
    verdict: str,
    reason: str,
) -> None:
    """Who checked what, when, and what they were told; written in batches (see
    :class:`CheckRecorder`)."""
    recorder(services).add(
        {
            "at": at,
            "actor": actor,
            "channel": channel,
            "kind": kind,
            "identifier": identifier,
            "verdict": verdict,
            "reason": reason,
        }
    )


class CheckRecorder:
    """Check records queued and written together, every ``interval`` seconds or ``batch``
    records: a window scanning all day must not make every check a write transaction that
    waits for the database's write lock (SQLite's is one per file). At most ``interval`` of
    records is at risk in a crash; the app writes what is queued when it stops."""

    def __init__(
        self, sessions: sessionmaker[Session], interval: float = 0.2, batch: int = 500
    ) -> None:
        self._sessions = sessions
        self._interval = interval
        self._batch = batch
        self._queue: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="check-recorder", daemon=True)
        self._thread.start()

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._queue.append(record)
            full = len(self._queue) >= self._batch
        if full:
            self._wake.set()

    def flush(self) -> None:
        with self._lock:
            pending, self._queue = self._queue, []
        if not pending:
            return
        try:
            with transaction(self._sessions, write=True) as session:
                session.execute(insert(VerificationCheckRow), pending)
        except Exception:
            with self._lock:  # kept for the next round, up to a bound
                self._queue = (pending + self._queue)[-MAX_PENDING:]
            raise

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the records stay queued; the next round tries again
                log.exception("check records could not be written")


def recorder(services: Services) -> CheckRecorder:
    found: CheckRecorder | None = services.__dict__.get("_check_recorder")
    if found is None:
        with _RECORDER_LOCK:
            found = services.__dict__.get("_check_recorder")
            if found is None:
                found = services.__dict__["_check_recorder"] = CheckRecorder(
                    services.runtime.sessions
                )
    return found


_RECORDER_LOCK = threading.Lock()
MAX_PENDING = 100_000
"""Check records kept in memory while the database refuses them (then the oldest go)."""
