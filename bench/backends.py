"""Signatures/s per key backend (software SM2 and RSA, SoftHSM2 P-256 and RSA-2048 through PKCS#11,
the SKF simulator's SM2), with 1 and 8 concurrent callers; PKCS#11 against raw python-pkcs11.

Run alone (``python -m bench.backends``) or from a process that has not loaded SoftHSM yet:
the module reads ``SOFTHSM2_CONF`` once, so the throw-away token directory is set up first.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import paired, rate, row

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "24681357"


def _token(folder: Path) -> str:
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    args = ["--init-token", "--free", "--label", "bench", "--so-pin", "13572468", "--pin", PIN]
    subprocess.run(
        ["softhsm2-util", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return "bench"


def _threaded(make: Callable[[], Callable[[], object]], threads: int, seconds: float) -> float:
    """Calls/s of ``threads`` callers, each with its own ``make()``d function."""
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(threads + 1)

    def worker(n: int) -> None:
        fn = make()
        fn()
        barrier.wait()
        while time.perf_counter() < stop:
            for _ in range(20):
                fn()
            counts[n] += 20

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def run(seconds: float) -> list[str]:
    import pkcs11
    from pkcs11 import Mechanism, ObjectClass

    from hsm_adapters.pkcs11 import Pkcs11Backend, Pkcs11Key

    with tempfile.TemporaryDirectory() as tmp:
        label = _token(Path(tmp))
        backend = Pkcs11Backend(MODULE, label, pin=PIN, pool_size=8)
        ec = backend.generate("ec", "ec-p256")
        rsa = backend.generate("rsa", "rsa-2048")
        token = pkcs11.lib(MODULE).get_token(token_label=label)
        message = b"x" * 64

        def raw(key_id: bytes, ecdsa: bool) -> Callable[[], object]:
            session = token.open()  # the backend's login covers the process
            key: Any = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
            if ecdsa:
                return lambda: key.sign(hashlib.sha256(message).digest(), mechanism=Mechanism.ECDSA)
            return lambda: key.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS)

        lines = []
        for name, key, ecdsa in (("P-256", ec, True), ("RSA-2048", rsa, False)):

            def ours(k: Pkcs11Key = key) -> Callable[[], object]:
                return lambda: k.sign(message)

            def theirs(k: Pkcs11Key = key, e: bool = ecdsa) -> Callable[[], object]:
                return raw(k.key_id, e)

            ours_fn, raw_fn = ours(), theirs()
            ours_1, raw_1 = paired(
                lambda t, f=ours_fn: rate(f, t, batch=20),  # type: ignore[misc]
                lambda t, f=raw_fn: rate(f, t, batch=20),  # type: ignore[misc]
                2 * seconds,
            )
            ours_8, raw_8 = paired(
                lambda t: _threaded(ours, 8, t), lambda t: _threaded(theirs, 8, t), 2 * seconds
            )
            lines.append(row(f"SoftHSM {name} sign, 1 caller (vs raw)", ours_1, raw_1, ">= 0.8x"))
            lines.append(row(f"SoftHSM {name} sign, 8 callers (vs raw)", ours_8, raw_8, ">= 0.8x"))
        backend.close()
        return lines + _software(seconds) + _skf(seconds)


def _software(seconds: float) -> list[str]:
    from trust.softkeys import SoftwareKeyStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SoftwareKeyStore.open(Path(tmp) / "keys")
        lines = []
        for spec in ("sm2", "rsa-2048"):
            key = store.generate(spec, spec)

            def sign(k: Any = key) -> Callable[[], object]:
                return lambda: k.sign(b"x" * 64)

            lines.append(row(f"software {spec} sign, 1 caller", rate(sign(), seconds, batch=20)))
            lines.append(row(f"software {spec} sign, 8 callers", _threaded(sign, 8, seconds)))
        return lines


def _skf(seconds: float) -> list[str]:
    """The SKF simulator (built with gcc, SM2 through libcrypto) through our ctypes adapter."""
    from hsm_adapters.skf import SkfBackend
    from tests.skfsim import Container, SkfSimulator, build_simulator

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        library = build_simulator(folder, 32)
        key_pem = subprocess.run(
            ["openssl", "genpkey", "-algorithm", "SM2"], capture_output=True, check=True, timeout=60
        ).stdout
        SkfSimulator(library, 32).provision(folder / "device", [Container("seal", key_pem)])
        uri = f"skf:container=seal?module-path={library}&ulong=32&pin-value=11223344"
        key = SkfBackend().find(uri)

        def sign() -> Callable[[], object]:
            return lambda: key.sign(b"x" * 64)

        return [
            row("SKF simulator SM2 sign, 1 caller", rate(sign(), seconds, batch=20)),
            row(
                "SKF simulator SM2 sign, 8 callers (one USB key: serial)",
                _threaded(sign, 8, seconds),
            ),
        ]


if __name__ == "__main__":
    for line in run(2.0):
        print(line)
