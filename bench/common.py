"""Timing helpers and the OpenSSL reference."""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


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


def paired(
    ours: Callable[[float], float],
    reference: Callable[[float], float],
    seconds: float,
    rounds: int = 6,
) -> tuple[float, float]:
    """Medians of ``rounds`` alternating short runs of two measurements.

    Each measurement takes a duration and returns a rate. Alternating them, and swapping which
    goes first, spreads the machine's drift (other processes, CPU clocks) over both sides, so
    the ratio is about the code and not about the minute it ran in.
    """
    slice_ = seconds / rounds
    ours_rates: list[float] = []
    ref_rates: list[float] = []
    for n in range(rounds):
        pair = [(ours, ours_rates), (reference, ref_rates)]
        for measure, out in pair if n % 2 == 0 else reversed(pair):
            out.append(measure(slice_))
    return statistics.median(ours_rates), statistics.median(ref_rates)


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def wrk(url: str, seconds: float, script: Path | None) -> float:
    """Requests per second from wrk (2 threads, 32 connections) on loopback."""
    return wrk_latency(url, seconds, script)[0]


def wrk_latency(
    url: str, seconds: float, script: Path | None, connections: int = 32
) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from wrk on loopback; errors are errors, not rates."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{max(int(seconds), 2)}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"no rate in wrk output:\n{out}")
    return float(rate.group(1)), _percentile(out, "50%"), _percentile(out, "99%")


def _percentile(out: str, which: str) -> float:
    match = re.search(rf"^\s*{re.escape(which)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wait_for(base: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("etrust serve did not start")
