"""The verify pages: ``/v`` (a phone camera opens it from a license's QR code), ``/window`` (a
clerk at a service window with a USB scanner, a camera or uploads) and ``/check`` (anyone).

Plain HTML with our own script and style files from ``etrust/static`` (no build step, nothing
from elsewhere). The pages hold no data: their scripts call ``POST /api/v1/verify`` and put every
answer into the page as text. A strict Content-Security-Policy (scripts and styles from this
server only, no inline code), ``no-referrer`` (the code in ``/v#...`` never leaks) and
``no-store`` go on every page and file.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from etrust.api import authenticated, require_role
from etrust.store import ApiClient
from trust.errors import NotFoundError

router = APIRouter(include_in_schema=False)

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), payment=()",
}
STATIC_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
_STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.(js|css)")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str
    integrity: str
    """Subresource Integrity value of the file (``sha384-...``)."""


@cache
def static_file(name: str) -> StaticFile:
    """A file of ``etrust/static`` (read once); NotFoundError for anything else."""
    match = _STATIC_NAME.fullmatch(name)
    if match is None:
        raise NotFoundError(f"no such file {name!r}")
    item = resources.files("etrust") / "static" / name
    if not item.is_file():
        raise NotFoundError(f"no such file {name!r}")
    body = item.read_bytes()
    digest = hashlib.sha384(body).digest()
    return StaticFile(
        body=body,
        media_type=STATIC_TYPES[match.group(1)],
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        integrity="sha384-" + base64.b64encode(digest).decode("ascii"),
    )


def _asset(name: str) -> str:
    """``src``/``href`` and ``integrity`` attributes for one of our files."""
    item = static_file(name)
    version = item.etag.strip('"')[:12]
    return f'"/static/{name}?v={version}" integrity="{item.integrity}"'


def _page(title: str, page: str, body: str, script: str) -> HTMLResponse:
    document = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href={_asset("pages.css")}>
<script src={_asset("common.js")} defer></script>
<script src={_asset(script)} defer></script>
</head><body data-page="{page}">
{body}
<footer class="foot">电子证照核验服务 · etrust</footer>
</body></html>"""
    return HTMLResponse(document, headers=SECURITY_HEADERS)


_RESULT = """<section id="result" class="result" aria-live="polite" hidden></section>"""
_CAMERA = """<div class="camera" id="camera-box" hidden>
<button type="button" id="camera-button" class="button">摄像头扫码</button>
<video id="camera-video" playsinline muted hidden></video>
<p id="camera-note" class="note" hidden></p>
</div>"""
_UPLOADS = """<div class="uploads">
<label class="upload" for="image-file"><span>上传二维码照片</span>
<small>PNG、JPEG 图片</small><b class="pick">选择图片</b>
<input type="file" id="image-file" accept="image/png,image/jpeg,image/gif,image/bmp,image/webp"></label>
<label class="upload" for="document-file"><span>上传签章文件</span>
<small>OFD、PDF、.esl、SignedValue.dat</small><b class="pick">选择文件</b>
<input type="file" id="document-file" accept=".ofd,.pdf,.esl,.dat,.p7s,.p7m,application/pdf"></label>
</div>"""


@router.get("/v", response_class=HTMLResponse)
def scanned_page() -> HTMLResponse:
    """What a phone camera opens from a license's QR code: the code is in the fragment."""
    body = f"""<main class="narrow">
<h1>电子证照核验</h1>
<div id="v-empty" class="explain" hidden>
<p>此页面用于核验电子证照上的二维码：用手机相机扫描证照上的二维码，即可在这里看到核验结果。</p>
<p>地址中没有二维码内容。您也可以<a href="/check" id="check-link">粘贴二维码内容或上传图片、文件进行核验</a>。</p>
</div>
<p id="busy" class="busy" hidden>正在核验……</p>
{_RESULT}
<p class="more" id="more" hidden><a href="/check">核验其他证照或文件</a></p>
</main>"""
    return _page("电子证照核验", "v", body, "v.js")


@router.get("/window", response_class=HTMLResponse)
def window_page() -> HTMLResponse:
    """The clerk's page at a service window: a scanner types into the always-focused field."""
    body = f"""<header class="bar">
<h1>窗口核验 <small>电子证照与签章文件</small></h1>
<div class="login" id="login">
<span id="who" class="who">未登录（核验记录为公众查询）</span>
<details id="login-box"><summary id="login-toggle">登录</summary>
<form id="login-form" class="inline" autocomplete="off">
<input type="password" id="token" placeholder="工作人员令牌" aria-label="工作人员令牌">
<button type="submit" class="button small" id="login-button">登录</button>
</form></details>
<button type="button" id="logout" class="button small" hidden>退出</button>
</div>
</header>
<main>
<form id="scan-form" class="scan" autocomplete="off">
<label for="scan">扫码枪扫描证照二维码（或粘贴后按回车）</label>
<input id="scan" name="scan" type="text" autocomplete="off" autocapitalize="off"
 spellcheck="false" enterkeyhint="go" autofocus placeholder="请扫描二维码……">
<label for="holder-code">持证人身份证号（选填，用于核对是否本人）</label>
<input id="holder-code" type="text" autocomplete="off" maxlength="64" inputmode="text"
 spellcheck="false" placeholder="例如 15250119900307123X">
</form>
<p id="busy" class="busy" hidden>正在核验……</p>
<p id="scan-ready" class="ready">就绪：可以扫码</p>
{_RESULT}
{_UPLOADS}
{_CAMERA}
</main>"""
    return _page("窗口核验 · 电子证照", "window", body, "window.js")


@router.get("/check", response_class=HTMLResponse)
def check_page() -> HTMLResponse:
    """The public page: paste a code, or upload a photo of one or a signed document."""
    body = f"""<main class="narrow">
<h1>电子证照与签章文件核验</h1>
<p class="explain">粘贴证照二维码的内容，或上传二维码照片、电子证照文件（OFD、PDF）或电子印章文件，查看是否真实有效。</p>
<form id="code-form" class="scan" autocomplete="off">
<label for="code">二维码内容</label>
<textarea id="code" rows="3" spellcheck="false" placeholder="粘贴二维码内容（以 https:// 开头的网址）"></textarea>
<button type="submit" class="button" id="code-button">核验</button>
</form>
<p id="busy" class="busy" hidden>正在核验……</p>
{_RESULT}
{_UPLOADS}
{_CAMERA}
</main>"""
    return _page("电子证照核验", "check", body, "check.js")


@router.get("/static/{name}")
def static(name: str, request: Request) -> Response:
    """Our scripts and styles; revalidated by ETag (``?v=`` in the pages changes with them)."""
    item = static_file(name)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": item.etag}
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)


@router.get("/window/me")
def signed_in(
    client: Annotated[ApiClient, Depends(authenticated)], response: Response
) -> dict[str, Any]:
    """Who a clerk's token names, for the window page to show (401 for a bad token). Only a
    service desk's token signs in at a window: an admin's or an RA officer's has no business
    sitting in a browser tab at a counter (403)."""
    response.headers.update(SECURITY_HEADERS)
    require_role(client, frozenset({"service-desk"}))
    return {"name": client.name, "role": client.role, "department": client.department}
