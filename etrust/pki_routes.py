"""Public PKI endpoints: front page, CA certificates, CRLs, OCSP (RFC 6960) and TSA (RFC 3161).

OCSP and TSA answer in their own formats even for bad input (``malformedRequest``,
``badRequest``): their clients cannot read problem+json. Bodies are read with a cap first.
"""

from __future__ import annotations

import base64
import binascii
import html
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from etrust.services import Services
from trust.certificates import to_pem
from trust.errors import InputTooLargeError, NotFoundError, TimestampRequestError
from trust.ocsp import MALFORMED_REQUEST_RESPONSE
from trust.tsa import parse_request, rejection

router = APIRouter()

OCSP_REQUEST_LIMIT = 64 * 1024
TSA_REQUEST_LIMIT = 64 * 1024


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InputTooLargeError(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputTooLargeError(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def front_page(request: Request, services: ServicesDep) -> HTMLResponse:
    base = str(request.base_url).rstrip("/")
    rows = []
    for name, ca in services.pki.cas.items():
        cert = ca.certificate
        rows.append(
            "<tr>"
            f"<td>{html.escape(name)}</td>"
            f"<td>{html.escape(cert.subject.native.get('common_name', ''))}</td>"
            f"<td>{html.escape(ca.signature_algorithm.name)}</td>"
            f"<td>{cert.not_valid_after:%Y-%m-%d}</td>"
            f'<td><a href="/pki/ca/{name}.crt">DER</a> · <a href="/pki/ca/{name}.pem">PEM</a></td>'
            f'<td><a href="/pki/crl/{name}.crl">CRL</a></td>'
            "</tr>"
        )
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>etrust 电子证照与电子印章信任服务</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2rem auto;max-width:60rem;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}}
code{{background:#f4f4f4;padding:.1rem .3rem}}
</style></head><body>
<h1>电子证照与电子印章信任服务 <small>etrust</small></h1>
<p>本服务运行 SM2 与 RSA 两套证书体系，提供证书、证书吊销列表（CRL）、在线证书状态（OCSP）和时间戳服务。
This service runs SM2 and RSA certificate hierarchies and publishes certificates, CRLs, OCSP and timestamps.</p>
<h2>证书机构 Certificate authorities</h2>
<table><tr><th>名称 Name</th><th>主题 Subject</th><th>算法 Algorithm</th><th>有效期至 Valid until</th>
<th>证书 Certificate</th><th>吊销列表 CRL</th></tr>
{"".join(rows)}
</table>
<h2>服务地址 Service URLs</h2>
<ul>
<li>OCSP（RFC 6960）: <code>{html.escape(base)}/pki/ocsp</code></li>
<li>时间戳 TSA（RFC 3161）: <code>{html.escape(base)}/pki/tsa</code>
 （SM3 摘要由 SM2 时间戳服务签发，SHA-256 摘要由 RSA 时间戳服务签发；也可用 <code>/pki/tsa/sm2</code>、<code>/pki/tsa/rsa</code>）</li>
<li>证书签发接口 Certificate API: <code>{html.escape(base)}/api/v1/certificates</code> — <a href="/docs">OpenAPI</a></li>
<li>电子证照签发 License issuance: <code>{html.escape(base)}/api/v1/licenses</code>
 （部门接口，需令牌 department clients, with a token）</li>
<li>证照状态列表 Signed status list: <a href="/api/v1/status-list"><code>{html.escape(base)}/api/v1/status-list</code></a></li>
<li>透明日志 Transparency log: <a href="/api/v1/log/checkpoint"><code>{html.escape(base)}/api/v1/log/checkpoint</code></a>
 （含包含性与一致性证明 with inclusion and consistency proofs）</li>
</ul>
</body></html>"""
    return HTMLResponse(page)


@router.get("/pki/ca/{filename}", tags=["pki"], summary="CA certificate (.crt DER, .pem PEM)")
def ca_certificate(filename: str, services: ServicesDep) -> Response:
    name, dot, ext = filename.rpartition(".")
    if not dot or ext not in ("crt", "cer", "der", "pem"):
        raise NotFoundError(f"no such file {filename!r}: use NAME.crt or NAME.pem")
    cert = services.pki.ca(name).certificate
    if ext == "pem":
        return Response(to_pem(cert), media_type="application/x-pem-file")
    return Response(cert.dump(), media_type="application/pkix-cert")


@router.get("/pki/crl/{filename}", tags=["pki"], summary="Current CRL of a CA (DER)")
def ca_crl(filename: str, services: ServicesDep) -> Response:
    name, dot, ext = filename.rpartition(".")
    if not dot or ext != "crl":
        raise NotFoundError(f"no such file {filename!r}: use NAME.crl")
    return Response(
        services.crl(name),
        media_type="application/pkix-crl",
        headers={"Cache-Control": "max-age=300"},
    )


def _ocsp_response(body: bytes) -> Response:
    return Response(body, media_type="application/ocsp-response")


@router.post("/pki/ocsp", tags=["pki"], summary="OCSP request (application/ocsp-request)")
async def ocsp_post(request: Request, services: ServicesDep) -> Response:
    try:
        body = await read_capped(request, OCSP_REQUEST_LIMIT)
    except InputTooLargeError:
        return _ocsp_response(MALFORMED_REQUEST_RESPONSE)
    return _ocsp_response(await run_in_threadpool(services.ocsp.respond, body))


@router.get("/pki/ocsp/{encoded:path}", tags=["pki"], summary="OCSP request, base64 in the path")
async def ocsp_get(encoded: str, services: ServicesDep) -> Response:
    text = unquote(encoded)
    if len(text) > OCSP_REQUEST_LIMIT * 2:
        return _ocsp_response(MALFORMED_REQUEST_RESPONSE)
    try:
        body = base64.b64decode(
            text + "=" * (-len(text) % 4),
            altchars=b"-_" if "-" in text or "_" in text else None,
            validate=True,
        )
    except (binascii.Error, ValueError):
        return _ocsp_response(MALFORMED_REQUEST_RESPONSE)
    return _ocsp_response(await run_in_threadpool(services.ocsp.respond, body))


def _tsa_reply(body: bytes) -> Response:
    return Response(body, media_type="application/timestamp-reply")


async def _timestamp(request: Request, services: Services, kind: str | None) -> Response:
    try:
        body = await read_capped(request, TSA_REQUEST_LIMIT)
    except InputTooLargeError as exc:
        return _tsa_reply(rejection("bad_request", exc.message).response)
    if kind is None:  # the imprint's hash picks the hierarchy: SM3 to SM2, others to RSA
        try:
            parsed = await run_in_threadpool(parse_request, body)
        except TimestampRequestError as exc:
            return _tsa_reply(rejection(exc.failure_info, exc.message).response)
        tsa = services.tsa("sm2" if parsed.hash_name == "sm3" else "rsa")
        return _tsa_reply((await run_in_threadpool(tsa.process_parsed, parsed)).response)
    return _tsa_reply(await run_in_threadpool(services.tsa(kind).respond, body))


@router.post(
    "/pki/tsa", tags=["pki"], summary="RFC 3161 timestamp (SM3 imprint: SM2 TSA; else RSA TSA)"
)
async def tsa_post(request: Request, services: ServicesDep) -> Response:
    return await _timestamp(request, services, None)


@router.post("/pki/tsa/{kind}", tags=["pki"], summary="RFC 3161 timestamp from the SM2 or RSA TSA")
async def tsa_post_kind(kind: str, request: Request, services: ServicesDep) -> Response:
    return await _timestamp(request, services, kind)
