"""Timing helpers and the OpenSSL reference."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def rate(fn: Callable[[], object], seconds: float = 2.0, batch: int = 50) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(min(batch, 20)):
        fn()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def openssl_speed(algorithm: str, seconds: int = 3) -> tuple[float, float]:
    """(sign/s, verify/s) from ``openssl speed -mr`` on one core."""
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(seconds), "-mr", algorithm],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    for line in out.splitlines():
        if line.startswith(("+F2:", "+F4:", "+F7:")):
            fields = line.split(":")
            return float(fields[-2]), float(fields[-1])
    raise RuntimeError(f"no result line in openssl speed {algorithm} output")


def row(label: str, ours: float, reference: float | None = None, target: str = "") -> str:
    ratio = f"{ours / reference:6.2f}x" if reference else "       "
    ref = f"{reference:10.0f}" if reference else " " * 10
    return f"{label:<44}{ours:10.0f}/s {ref}  {ratio}  {target}"
