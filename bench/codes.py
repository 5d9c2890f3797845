"""License codes: offline verifications per second in one process (trust list and status list
in memory), QR codes read from photos per second, and POST /api/v1/verify over HTTP (`etrust
serve` with two workers, loaded by wrk on loopback: rate, p50, p99)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import free_port, lua_string, rate, row, wait_for, wrk_latency

WORKERS = 2


def run(seconds: float) -> list[str]:
    from etrust.cli import main as etrust
    from etrust.demo import DEMO_DEPARTMENT_CODE, demo_license_types
    from etrust.licenses import department_signer, license_service, status_lists
    from etrust.runtime import open_runtime
    from etrust.settings import load_settings
    from etrust.verification import decode_image, trust_list_bytes
    from license_store.issuance import IssueRequest
    from signing.qr import qr_symbol
    from trust.clock import system_clock
    from verify_app.code_check import CodeChecker, StatusListSource
    from verify_app.trust_list import read_trust_list

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        with contextlib.redirect_stdout(io.StringIO()):
            etrust(["--home", str(home), "init", "--demo"])
        rt = open_runtime(load_settings(home))
        try:
            worker = demo_license_types()[0]
            issued = license_service(rt).issue(
                IssueRequest(
                    worker.code,
                    DEMO_DEPARTMENT_CODE,
                    "张三",
                    "152501199003071234",
                    data=worker.example,
                ),
                department_signer(rt, DEMO_DEPARTMENT_CODE),
                "bench",
            )
            text = license_service(rt).qr_text(issued.license.qr_payload)
            trust = read_trust_list(trust_list_bytes(rt), anchors=None)
            listed = json.loads(status_lists(rt).current().body)
        finally:
            rt.close()
        checker = CodeChecker(trust)
        status = StatusListSource.from_list(listed)
        now = system_clock()
        assert checker.check(text, now=now, status=status).verdict == "valid"
        lines.append(
            row(
                "license codes verified offline (1 process)",
                rate(lambda: checker.check(text, now=now, status=status), seconds, batch=200),
                target=">= 3,000/s per core",
            )
        )
        photo = qr_symbol(text, scale=6).png
        lines.append(
            row(
                "QR codes read from images (PNG, 1 process)",
                rate(lambda: decode_image(photo), seconds),
            )
        )
        lines.append(_http(home, text, seconds, Path(folder)))
    return lines


def _http(home: Path, text: str, seconds: float, folder: Path) -> str:
    if shutil.which("wrk") is None:
        return "license codes over HTTP: skipped (wrk is not installed: make bench installs it)"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "etrust.cli", "--home", str(home), "serve", "--port", str(port),
         "--workers", str(WORKERS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ETRUST_HOME": str(home)},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base)
        import httpx

        for _ in range(50):  # each worker's first checks build its trust list and caches
            httpx.post(f"{base}/api/v1/verify", json={"code": text}, timeout=30)
        script = folder / "verify.lua"
        body = json.dumps({"code": text}).encode()
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {lua_string(body)}\n"
        )
        per_second, p50, p99 = wrk_latency(f"{base}/api/v1/verify", seconds, script, 8)
        return (
            f"{'POST /api/v1/verify, 2 workers, 8 conns':<44}{per_second:10.0f}/s  "
            f"p50 {p50:5.1f} ms  p99 {p99:5.1f} ms  >= 1,000/s at p99 <= 50 ms"
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
