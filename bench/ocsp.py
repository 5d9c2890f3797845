"""OCSP answers per second over HTTP: `etrust serve` with two workers, loaded by wrk on loopback.

Two loads per hierarchy: POST with a nonce (every answer freshly signed) and GET without one
(answers may come from the responder's short-lived cache, as RFC 5019 clients allow). The
reference is what `openssl speed` signs per second on the machine's cores, measured in the
same run. The load is bounded: a few seconds, 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import openssl_speed, row
from etrust.cli import main as etrust
from etrust.runtime import Runtime, open_runtime
from etrust.settings import load_settings
from trust.certificates import load_certificate
from trust.ocsp import build_request

WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def _wrk(url: str, seconds: float, script: Path | None) -> float:
    args = ["wrk", "-t2", "-c32", f"-d{max(int(seconds), 2)}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no rate in wrk output:\n{out}")
    return float(match.group(1))


def run(seconds: float) -> list[str]:
    if shutil.which("wrk") is None:
        return ["OCSP over HTTP: skipped (wrk is not installed: make bench installs it)"]
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        etrust(["--home", str(home), "init", "--demo"])
        requests = {}
        rt = open_runtime(load_settings(home))
        try:
            pki = rt.pki()
            for kind in ("sm2", "rsa"):
                ca = pki.ca(f"issuing-{kind}")
                serial = _identity_serial(rt, ca.name)
                requests[kind] = (
                    build_request(ca.certificate, [serial], nonce=os.urandom(16)),
                    build_request(ca.certificate, [serial]),
                )
        finally:
            rt.close()
        port = _free_port()
        env = {**os.environ, "ETRUST_HOME": str(home)}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "etrust.cli",
                "--home",
                str(home),
                "serve",
                "--port",
                str(port),
                "--workers",
                str(WORKERS),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(base)
            lines = []
            for kind, (with_nonce, plain) in requests.items():
                script = Path(folder) / f"{kind}.lua"
                script.write_text(
                    'wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/ocsp-request"\n'
                    f"wrk.body = {_lua_string(with_nonce)}\n"
                )
                signed = _wrk(f"{base}/pki/ocsp", seconds, script)
                cached = _wrk(
                    f"{base}/pki/ocsp/{base64.urlsafe_b64encode(plain).decode()}", seconds, None
                )
                algorithm = "sm2" if kind == "sm2" else "rsa2048"
                reference = openssl_speed(algorithm, int(max(seconds, 1)))[0] * WORKERS
                lines.append(
                    row(
                        f"OCSP/HTTP {kind}, nonce, signed each (vs openssl sign x{WORKERS})",
                        signed,
                        reference,
                        "target >= 1,000/s",
                    )
                )
                lines.append(
                    row(
                        f"OCSP/HTTP {kind}, no nonce, cacheable",
                        cached,
                        reference,
                        "target >= 1,000/s",
                    )
                )
            return lines
        finally:
            server.terminate()
            server.wait(timeout=20)


def _identity_serial(rt: Runtime, ca_name: str) -> int:
    """The serial of a certificate ``ca_name`` issued (its OCSP responder's): a known, good one."""
    for record in rt.identities.list():
        if record.ca_name == ca_name:
            return int(load_certificate(record.certificate_der).serial_number)
    raise RuntimeError(f"no certificate issued by {ca_name}")


def _wait(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("etrust serve did not start")
