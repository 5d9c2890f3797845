"""The license registry: end-to-end issuances per second (SQLite and PostgreSQL), look-ups by
identifier and by holder among 1,000,000 licenses on PostgreSQL, inclusion proofs at
1,000,000 log entries.

Issuance is the whole service call: validate, allocate the identifier, sign the QR payload,
render OFD and PDF, seal both (SES with a timestamp; PAdES B-T), store and log. The million
rows are seeded by COPY, not issued: the look-ups are what is measured.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import row

POSTGRES = os.environ.get(
    "ETRUST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MILLION = int(os.environ.get("ETRUST_BENCH_ROWS", "1000000"))
IMPORT_ROWS = int(os.environ.get("ETRUST_BENCH_IMPORT_ROWS", "10000"))


def run(seconds: float) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        lines += _issuance(Path(tmp) / "sqlite", None, seconds)
        lines += _bulk_import(Path(tmp) / "import")
        with _postgres_database() as url:
            lines += _issuance(Path(tmp) / "postgres", url, seconds)
        with _postgres_database() as url:
            lines += _lookups(Path(tmp) / "million", url)
    return lines


def _issuance(home: Path, url: str | None, seconds: float) -> list[str]:
    from etrust.cli import main

    if url:
        os.environ["ETRUST_DATABASE_URL"] = url
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--home", str(home), "init", "--demo"]) == 0
        name = "PostgreSQL" if url else "SQLite"
        out = []
        for processes in (1, 2):
            out.append(
                row(
                    f"licenses issued end to end, {name}, {processes} proc.",
                    _process_rate(home, processes, seconds),
                    target=">= 50/s" if processes > 1 else "",
                )
            )
        return out
    finally:
        os.environ.pop("ETRUST_DATABASE_URL", None)


def _bulk_import(home: Path) -> list[str]:
    """``etrust license import`` of IMPORT_ROWS historical licenses (SQLite, 2 workers)."""
    import csv
    import json

    from etrust.cli import main
    from etrust.demo import DEMO_DEPARTMENT_CODE, demo_license_types
    from license_store.holder_codes import resident_id_check

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--home", str(home), "init", "--demo"]) == 0
    license_type = demo_license_types()[0]
    source = home / "historical.csv"
    with source.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["holder_name", "holder_code", "issue_date", "valid_from", "valid_to",
             "gender", "birth_date", "category"]
        )  # fmt: skip
        for n in range(IMPORT_ROWS):
            body = f"15250119{70 + n % 30:02d}0{1 + n % 9}{10 + n % 18:02d}{n % 1000:03d}"
            writer.writerow(
                ["张三", body + resident_id_check(body), "2020-06-01", "2020-06-01",
                 "2026-06-01", "男", "1980-01-01", "建筑电工"]
            )  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["--home", str(home), "license", "import", str(source), "--type", license_type.code,
             "--department", DEMO_DEPARTMENT_CODE, "--workers", "2", "--json"]
        )  # fmt: skip
    result = json.loads(out.getvalue())
    if code != 0:
        return [f"# bulk import failed (exit {code}): {result}"]
    return [
        row(
            f"licenses imported in bulk ({result['rows']} rows, 2 proc.)",
            result["imported"] / result["seconds"],
        )
    ]


def _issue_for(home: str, seconds: float, start_at: float) -> int:
    """In a worker process: open the home, warm up, then issue until the deadline."""
    from etrust.demo import DEMO_DEPARTMENT_CODE, demo_license_types
    from etrust.licenses import department_signer, license_service
    from etrust.runtime import open_runtime
    from etrust.settings import load_settings
    from license_store.holder_codes import resident_id_check
    from license_store.issuance import IssueRequest

    rt = open_runtime(load_settings(home))
    service = license_service(rt)
    license_type = demo_license_types()[0]
    signer = department_signer(rt, DEMO_DEPARTMENT_CODE)

    def issue() -> None:
        body = f"15250119900307{secrets.randbelow(1000):03d}"
        service.issue(
            IssueRequest(
                license_type.code,
                DEMO_DEPARTMENT_CODE,
                "张三",
                body + resident_id_check(body),
                data=license_type.example,
            ),
            signer,
            "bench",
        )

    for _ in range(3):
        issue()
    while time.time() < start_at:
        time.sleep(0.01)
    count = 0
    deadline = start_at + seconds
    while time.time() < deadline:
        issue()
        count += 1
    rt.close()
    return count


def _process_rate(home: Path, processes: int, seconds: float) -> float:
    """Issuances per second of ``processes`` worker processes (as ``serve --workers N``)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 8.0  # every worker opened and warmed up
    with context.Pool(processes) as pool:
        counts = pool.starmap(_issue_for, [(str(home), seconds, start_at)] * processes)
    return sum(counts) / seconds


def _lookups(home: Path, url: str) -> list[str]:
    """1,000,000 licenses and a 1,000,000-entry log, seeded by COPY; then p50/p99 look-ups."""
    from sqlalchemy import select

    from etrust.cli import main
    from etrust.runtime import open_runtime
    from etrust.settings import load_settings
    from license_store.models import LicenseRow
    from license_store.records import row_by_identifier
    from license_store.translog import TransparencyLog
    from storage.engine import transaction

    os.environ["ETRUST_DATABASE_URL"] = url
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--home", str(home), "init", "--demo"]) == 0
        rt = open_runtime(load_settings(home))
        started = time.perf_counter()
        identifiers, hashes = _seed_licenses(rt, MILLION)
        _seed_log(rt, MILLION)
        seeded = time.perf_counter() - started
        out = [f"# seeded {MILLION} licenses and {MILLION} log entries in {seeded:.0f} s"]

        def by_identifier() -> None:
            with transaction(rt.sessions) as session:
                row_by_identifier(session, secrets.choice(identifiers))

        def by_holder() -> None:
            with transaction(rt.sessions) as session:
                list(
                    session.scalars(
                        select(LicenseRow.identifier).where(
                            LicenseRow.holder_hash == secrets.choice(hashes)
                        )
                    )
                )

        log = TransparencyLog(rt.sessions)

        def proof() -> None:
            log.inclusion_proof(secrets.randbelow(MILLION), MILLION)

        for label, fn, target in (
            ("look-up by identifier (1M rows, PostgreSQL)", by_identifier, "p99 <= 5 ms"),
            ("look-up by holder (1M rows, PostgreSQL)", by_holder, "p99 <= 5 ms"),
            ("inclusion proof at 1M entries (PostgreSQL)", proof, "<= 2 ms"),
        ):
            p50, p99, per_second = _latencies(fn, 2000)
            out.append(
                f"{label:<44}{per_second:10.0f}/s  p50 {p50 * 1000:5.2f} ms  "
                f"p99 {p99 * 1000:5.2f} ms  {target}"
            )
        rt.close()
        return out
    finally:
        os.environ.pop("ETRUST_DATABASE_URL", None)


def _latencies(fn: Callable[[], None], count: int) -> tuple[float, float, float]:
    for _ in range(50):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)], count / total


def _copy(rt: Any, table: str, columns: str, lines: Callable[[io.StringIO], None]) -> None:
    raw = rt.engine.raw_connection()
    try:
        buffer = io.StringIO()
        lines(buffer)
        buffer.seek(0)
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            while chunk := buffer.read(1 << 20):
                copy.write(chunk)
        raw.commit()
    finally:
        raw.close()


def _seed_licenses(rt: Any, count: int) -> tuple[list[str], list[str]]:
    from etrust.demo import DEMO_DEPARTMENT_CODE, DEMO_DEPARTMENT_USCC, demo_license_types
    from license_store.identifiers import LicenseId, format_serial

    type_code = demo_license_types()[0].code
    sample_ids: list[str] = []
    sample_hashes: list[str] = []

    def lines(out: io.StringIO) -> None:
        for n in range(count):
            lid = LicenseId(type_code, DEMO_DEPARTMENT_USCC, format_serial(10**9 + n), 1)
            identifier = str(lid)
            lineage = identifier.rsplit(".", 2)[0]
            holder = secrets.token_hex(32)
            if n % 500 == 0:
                sample_ids.append(identifier)
                sample_hashes.append(holder)
            out.write(
                f"{identifier}\t{lineage}\t1\t{type_code}\t{DEMO_DEPARTMENT_CODE}\t\\N\t张三\t"
                f"152501199003071234\t111\t{holder}\t2026-01-01\t2026-01-01\t2028-01-01\t{{}}\t"
                f"valid\t\\N\t2026-01-01 00:00:00+00\t15990000000001\t\\\\x00\t-1\tbench\t"
                f"2026-01-01 00:00:00+00\n"
            )

    _copy(
        rt,
        "licenses",
        "identifier, lineage, version, type_code, department, license_number, holder_name, "
        "holder_code, holder_code_type, holder_hash, issue_date, valid_from, valid_to, data, "
        "status, status_reason, status_changed_at, seal, qr_payload, log_index, issued_by, "
        "created_at",
        lines,
    )
    with rt.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE licenses")
    return sample_ids, sample_hashes


def _seed_log(rt: Any, count: int) -> None:
    from trust import merkle

    tree = merkle.MemoryTree()
    for n in range(count):
        tree.append(n.to_bytes(8, "big"))

    def nodes(out: io.StringIO) -> None:
        level, width = 0, count
        while width:
            for index in range(width):
                out.write(f"{level}\t{index}\t\\\\x{tree.subtree(level, index).hex()}\n")
            level, width = level + 1, width // 2

    with rt.engine.begin() as conn:  # the demo's few entries make way for the million
        for table in ("log_nodes", "log_entries", "log_checkpoints", "log_head"):
            conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
    _copy(rt, "log_nodes", "level, index, hash", nodes)
    frontier = b"".join(
        tree.subtree(level, (count >> level) - 1)
        for level in reversed(range(count.bit_length()))
        if count >> level & 1
    )
    with rt.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO log_head (id, size, frontier) VALUES (1, %(size)s, %(frontier)s)",
            {"size": count, "frontier": frontier},
        )
        conn.exec_driver_sql("ANALYZE log_nodes")


class _postgres_database:
    """A scratch PostgreSQL database for one measurement, dropped afterwards."""

    def __enter__(self) -> str:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        base = make_url(POSTGRES)
        self._admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        self._name = f"etrust_bench_{secrets.token_hex(4)}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self._name}"'))
        return base.set(database=self._name).render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'))
        self._admin.dispose()
