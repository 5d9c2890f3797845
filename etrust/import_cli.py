"""``etrust license import``: bulk import of historical licenses from a CSV file.

Parsing, the report and the resume bookkeeping are :mod:`license_store.bulk_import`'s; this
module wires them to a home: the department's seal, a progress bar, and a pool of worker
processes, since issuing is CPU-bound Python (rendering, sealing, signing). Each worker opens
its own runtime and signer once; the parent reads the file, hands rows out in chunks and
records the results in row order, so report and progress read the same whatever the pool did.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any, TextIO

from etrust.audit import AuditEvent, Outcome
from etrust.cli_io import actor, print_result
from etrust.licenses import department_signer, license_service
from etrust.runtime import Runtime, open_runtime
from etrust.settings import load_settings
from license_store.bulk_import import (
    ImportFile,
    ImportJournal,
    ImportRow,
    ImportSummary,
    RowResult,
    Tally,
    issue_row,
    run_import,
)
from license_store.issuance import LicenseService, LicenseSigner
from trust.errors import EtrustError

EXIT_REJECTED = 3
MAX_WORKERS = 32
CHUNK_ROWS = 16
"""Rows per task sent to a worker: about a second of work, so results come back steadily."""
SMALL_IMPORT_ROWS = 100
"""Below this, unless --workers says otherwise, rows are issued in this process: starting
worker processes (each opens a runtime) would take longer than the rows."""
REDRAW_SECONDS = 0.1

HELP = "import historical licenses from a CSV file (exit 3 if rows were rejected)"
DESCRIPTION = """\
Import historical licenses from a CSV file (UTF-8, with or without BOM, or GB18030), one
license per row, sealed and logged as if issued today but with the dates they carry.

Header: holder_name, holder_code and issue_date, the type's required fields, and optionally
holder_code_type (default: the type's first), license_number, valid_from (default: the issue
date), valid_to (empty or 长期: long-term if the type is, else the type's rule) and its other
fields. Fields are named as in the type's schema or by their Chinese labels (etrust
license-type show CODE). An unknown column refuses the whole file before anything is issued.
Dates: YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD. Lists: values separated by 、 or ;.
Limits: 200 MB, 1,000,000 rows, 64 KB a row.

Rejected rows go to the report (default FILE.rejected.csv; rows numbered as a spreadsheet
shows them, the header being row 1), with holder codes masked. After an interruption, run the
same command again: it resumes where it stopped and never issues a row twice.

Exit status: 0 every row imported (or imported before), 3 some rows rejected (see the
report), 1 error (the import stopped there; running it again resumes it).
"""


def cmd_import(rt: Runtime, args: argparse.Namespace) -> int:
    service = license_service(rt)
    license_type, _ = service.registry.issuing(args.type, args.department)
    signer = department_signer(rt, args.department, args.seal)  # no seal: refused up front
    source = ImportFile.open(Path(args.file), license_type, args.department)
    report = Path(args.report) if args.report else Path(f"{args.file}.rejected.csv")
    try:
        with ImportJournal(report, source) as journal:
            summary = _run(rt, args, service, signer, source, journal)
    except EtrustError as exc:
        _audit(rt, source, "failure", {"error": exc.code})
        raise
    _audit(rt, source, "success", summary.to_dict())
    rate = f"{summary.rate:.1f} rows/s"
    text = (
        f"imported {summary.tally.imported}, replayed {summary.tally.replayed}, rejected "
        f"{summary.tally.rejected} of {summary.rows} rows in {summary.seconds:.1f} s ({rate})"
    )
    if summary.resumed_after:
        text += f", resumed after row {summary.resumed_after}"
    if summary.tally.rejected:
        text += f"; rejected rows: {summary.report}"
    print_result(args, summary.to_dict(), text)
    return EXIT_REJECTED if summary.tally.rejected else 0


def _run(
    rt: Runtime,
    args: argparse.Namespace,
    service: LicenseService,
    signer: LicenseSigner,
    source: ImportFile,
    journal: ImportJournal,
) -> ImportSummary:
    remaining = max(0, source.total - journal.tally.done)
    workers = args.workers or (default_workers() if remaining >= SMALL_IMPORT_ROWS else 1)
    chunk = max(1, min(CHUNK_ROWS, remaining // (workers * 4)))
    workers = min(workers, -(-remaining // chunk))  # no more processes than chunks
    bar = ProgressBar(sys.stderr, source.total, journal.tally.done) if sys.stderr.isatty() else None
    try:
        if workers <= 1:
            who = actor()
            in_process = partial(_issue_each, service, signer, who)
            return run_import(source, journal, in_process, bar)
        context = multiprocessing.get_context("spawn")  # no fork of open connections
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(str(rt.settings.home), args.department, args.seal, actor()),
        ) as pool:
            pooled = partial(_ordered_results, pool, chunk, workers * 2)
            return run_import(source, journal, pooled, bar)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        print(
            f"interrupted after row {journal.done_through}: run the same command again to resume",
            file=sys.stderr,
        )
        raise
    finally:
        if bar is not None:
            bar.close()


def _issue_each(
    service: LicenseService, signer: LicenseSigner, who: str, rows: Iterable[ImportRow]
) -> Iterator[RowResult]:
    for row in rows:
        yield issue_row(service, signer, who, row)


def default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)


# --- the pool ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Worker:
    service: LicenseService
    signer: LicenseSigner
    actor: str


_worker: _Worker | None = None
"""This worker process's service and signer, opened once by the pool's initializer."""


def _start_worker(home: str, department: str, seal: str | None, who: str) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    rt = open_runtime(load_settings(home))
    Finalize(None, rt.close, exitpriority=10)  # run when the worker process exits
    _worker = _Worker(license_service(rt), department_signer(rt, department, seal), who)


def _issue_chunk(rows: list[ImportRow]) -> list[RowResult]:
    worker = _worker
    assert worker is not None, "the pool initializer did not run"
    return [issue_row(worker.service, worker.signer, worker.actor, row) for row in rows]


def _ordered_results(
    pool: ProcessPoolExecutor, chunk: int, window: int, rows: Iterable[ImportRow]
) -> Iterator[RowResult]:
    """Results in row order, with ``window`` chunks in flight: enough to keep every worker
    busy, few enough that a stop leaves little issued beyond the recorded progress (those
    rows are replayed, not issued again, when the import resumes)."""
    pending: deque[Future[list[RowResult]]] = deque()
    iterator = iter(rows)
    try:
        while batch := list(islice(iterator, chunk)):
            pending.append(pool.submit(_issue_chunk, batch))
            if len(pending) >= window:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


# --- progress ----------------------------------------------------------------------------


class ProgressBar:
    """Rows done of the total, rate and time left on one terminal line, redrawn at most ten
    times a second (a million rows must not mean a million writes)."""

    WIDTH = 24

    def __init__(
        self, stream: TextIO, total: int, done: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._total = total
        self._start_done = done
        self._clock = clock
        self._started = clock()
        self._drawn_at = -math.inf
        self._shown = 0

    def __call__(self, tally: Tally) -> None:
        now = self._clock()
        if now - self._drawn_at < REDRAW_SECONDS and tally.done < self._total:
            return
        self._drawn_at = now
        line = self.line(tally, now - self._started)
        self._stream.write("\r" + line.ljust(self._shown))  # spaces cover a longer last line
        self._stream.flush()
        self._shown = len(line)

    def line(self, tally: Tally, elapsed: float) -> str:
        done, total = tally.done, self._total
        filled = self.WIDTH * done // total if total else self.WIDTH
        rate = (done - self._start_done) / elapsed if elapsed > 0 else 0.0
        eta = _duration((total - done) / rate) if rate > 0 else "?"
        rejected = f", {tally.rejected} rejected" if tally.rejected else ""
        return (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} rows"
            f"{rejected}  {rate:.1f}/s  ETA {eta}"
        )

    def close(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = 0


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _audit(rt: Runtime, source: ImportFile, outcome: Outcome, detail: dict[str, Any]) -> None:
    """One audit record per run (each license is in the transparency log already)."""
    event = AuditEvent(
        actor(),
        "license.import",
        source.path.name,
        None,
        source.sha256,
        outcome,
        {"type": source.license_type.code, "department": source.department, **detail},
    )
    with contextlib.suppress(EtrustError):  # the result is reported either way
        rt.record(event)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a number of processes from 1 to {MAX_WORKERS}")
    return value


def add_commands(license_commands: Any, command: Any) -> None:
    """Register ``import`` under ``etrust license``."""
    p: argparse.ArgumentParser = command("import", cmd_import, HELP, license_commands)
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("file", help="the CSV file")
    p.add_argument("--type", required=True, help="the license type code (21 characters)")
    p.add_argument("--department", required=True, help="the issuing department's code")
    p.add_argument("--seal", help="the seal to use (default: the department's SM2 seal)")
    p.add_argument("--report", help="where rejected rows go (default: FILE.rejected.csv)")
    p.add_argument(
        "--workers",
        type=_workers,
        help="processes issuing in parallel (default: CPUs, at most 4; 1: in this process)",
    )
