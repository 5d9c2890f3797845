"""OCSP answers per second over HTTP: `etrust serve` with two workers, loaded by wrk on loopback.

Two loads per hierarchy: POST with a nonce (every answer freshly signed) and GET without one
(answers may come from the responder's short-lived cache, as RFC 5019 clients allow). The
reference is what `openssl speed` signs per second on the machine's cores, measured in the
same run. The load is bounded: a few seconds, 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import free_port, lua_string, openssl_speed, row, wait_for, wrk
from etrust.cli import main as etrust
from etrust.runtime import Runtime, open_runtime
from etrust.settings import load_settings
from trust.certificates import load_certificate
from trust.ocsp import build_request

WORKERS = 2


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
        port = free_port()
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
            wait_for(base)
            lines = []
            for kind, (with_nonce, plain) in requests.items():
                script = Path(folder) / f"{kind}.lua"
                script.write_text(
                    'wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/ocsp-request"\n'
                    f"wrk.body = {lua_string(with_nonce)}\n"
                )
                signed = wrk(f"{base}/pki/ocsp", seconds, script)
                cached = wrk(
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
