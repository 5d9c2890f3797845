"""Bulk import of historical licenses from a CSV file: "collect once, use many times" starts
with the licenses a department issued on paper.

The file is checked whole before anything is issued (encoding, header, size limits), so a typo
in a column name cannot silently drop a field from a million licenses. Each row then becomes one
issuance under an Idempotency-Key made of the file's hash and the row number: a run again after
an interruption answers the rows already issued from the idempotency table and never issues one
twice. The progress file beside the report only saves asking that table row by row: the table
is the truth, so a progress file that lags behind costs a few replays, and one that belongs to
another file (or is lost) is ignored.

Rows the type refuses (a wrong check digit, a field the schema forbids, dates out of order) go
to the report, holder codes masked, and the import goes on; anything else stops it.

Row numbers count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import IO, Any, Literal

from license_store.holder_codes import HOLDER_CODE_TYPES, mask_holder_code
from license_store.issuance import IssueRequest, LicenseService, LicenseSigner
from license_store.types import LicenseType
from trust.errors import ConflictError, EtrustError, InputTooLargeError, MalformedInputError

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_ROW_BYTES = 64 * 1024
IMPORT_CLIENT = "import"
"""The client name of the import's Idempotency-Keys (apart from the API clients' keys)."""
ENCODINGS = ("utf-8-sig", "gb18030")
"""Tried in this order: UTF-8 (with or without BOM), then GB18030, which Excel writes in China."""
LONG_TERM = "长期"
PROGRESS_SUFFIX = ".progress"
REPORT_HEADER = ("row", "holder_name", "code", "message")
SAVE_INTERVAL_SECONDS = 1.0
"""How often the progress file is rewritten (with fsync): often enough, and not per row."""

STANDARD_COLUMNS: dict[str, tuple[str, ...]] = {
    "holder_name": ("持证主体名称", "持证主体"),
    "holder_code": ("持证主体代码",),
    "holder_code_type": ("持证主体代码类型",),
    "license_number": ("证照编号",),
    "issue_date": ("发证日期",),
    "valid_from": ("有效期起始日期",),
    "valid_to": ("有效期截止日期",),
}
"""The columns every import may have, with the Chinese names also accepted (GB/T 36903)."""
REQUIRED_COLUMNS = ("holder_name", "holder_code", "issue_date")
"""A historical license without its issue date would be dated today: that date is required."""


class ImportFileError(MalformedInputError):
    """An import file refused up front, before any row is issued."""

    code = "IMPORT_FILE_INVALID"
    message_zh = "导入文件不符合要求"


class ImportFileTooLargeError(InputTooLargeError):
    code = "IMPORT_FILE_TOO_LARGE"
    message_zh = "导入文件过大"


class ImportRowError(MalformedInputError):
    """Cells that do not parse (a date, a number): the row is rejected, not the file."""

    code = "IMPORT_ROW_INVALID"
    message_zh = "导入数据行不正确"


class ImportBusyError(ConflictError):
    """Another import writes the same report (and would interleave its lines with ours)."""

    code = "IMPORT_IN_PROGRESS"
    message_zh = "该文件正在导入"


class ImportInterruptedError(EtrustError):
    """The import stopped on something other than a bad row; running it again resumes it."""

    code = "IMPORT_INTERRUPTED"
    http_status = 500
    message_zh = "导入中断，重新运行即可继续"


# --- rows ---------------------------------------------------------------------------------

Outcome = Literal["imported", "replayed", "rejected"]


@dataclass(frozen=True)
class ImportRow:
    """One data row, parsed: the issuance it asks for, or why it cannot be one."""

    row: int
    key: str
    holder_name: str
    code: str
    """The holder code masked: what the report may show."""
    request: IssueRequest | None
    error: str | None = None


@dataclass(frozen=True)
class RowResult:
    row: int
    outcome: Outcome
    holder_name: str
    code: str
    identifier: str | None = None
    message: str | None = None


def idempotency_key(file_sha256: str, row: int) -> str:
    return f"import:{file_sha256[:32]}:{row}"


def issue_row(
    service: LicenseService, signer: LicenseSigner, actor: str, row: ImportRow
) -> RowResult:
    """Issue one row (or answer it from the idempotency table). A bad row is a result; a
    failure of the service itself (status 5xx: a device, the configuration) is raised, as it
    would reject every row after it too."""
    if row.request is None:
        return RowResult(row.row, "rejected", row.holder_name, row.code, message=row.error)
    try:
        issued = service.issue(
            row.request, signer, actor, client=IMPORT_CLIENT, idempotency_key=row.key
        )
    except EtrustError as exc:
        if exc.http_status >= 500:
            raise
        return RowResult(row.row, "rejected", row.holder_name, row.code, message=str(exc))
    return RowResult(
        row.row,
        "replayed" if issued.replayed else "imported",
        row.holder_name,
        row.code,
        identifier=issued.license.identifier,
    )


# --- the file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Which cell of a row holds what."""

    width: int
    standard: Mapping[str, int]
    fields: Mapping[str, int]
    unnamed: tuple[int, ...]
    """Columns with an empty header (trailing commas from a spreadsheet): they must stay empty."""

    @classmethod
    def of(cls, header: list[str], license_type: LicenseType) -> Columns:
        """The header's columns, or ImportFileError naming every unknown, ambiguous, repeated
        or missing one (the operator fixes the header in one go)."""
        properties: Mapping[str, Any] = license_type.schema.get("properties", {})
        targets: dict[str, set[str]] = {}
        for column, aliases in STANDARD_COLUMNS.items():
            for name in (column, *aliases):
                targets.setdefault(name, set()).add(column)
        for name in properties:
            for alias in (name, license_type.labels.get(name)):
                if alias:
                    targets.setdefault(alias, set()).add(f"field:{name}")
        found: dict[str, int] = {}
        unknown, ambiguous, repeated, unnamed = [], [], [], []
        for index, cell in enumerate(header):
            name = cell.strip().lstrip("\ufeff").strip()
            meant = targets.get(name, set())
            if not name:
                unnamed.append(index)
            elif not meant:
                unknown.append(name if len(name) <= 40 else name[:40] + "…")
            elif len(meant) > 1:
                ambiguous.append(name)
            elif (target := next(iter(meant))) in found:
                repeated.append(name)
            else:
                found[target] = index
        required = [
            *REQUIRED_COLUMNS,
            *(f"field:{n}" for n in license_type.schema.get("required", ())),
        ]
        missing = [_column_name(t, license_type) for t in required if t not in found]
        problems = []
        if unknown:
            problems.append(f"unknown columns {', '.join(map(repr, unknown))}")
        if ambiguous:
            problems.append(f"ambiguous columns {', '.join(map(repr, ambiguous))}")
        if repeated:
            problems.append(f"columns given twice {', '.join(map(repr, repeated))}")
        if missing:
            problems.append(f"missing required columns {', '.join(missing)}")
        if problems:
            accepted = [
                *STANDARD_COLUMNS,
                *(_column_name(f"field:{n}", license_type) for n in properties),
            ]
            raise ImportFileError(
                f"the header does not fit type {license_type.code}: {'; '.join(problems)} "
                f"(the columns are {', '.join(accepted)})"
            )
        return cls(
            width=len(header),
            standard={k: v for k, v in found.items() if not k.startswith("field:")},
            fields={k[6:]: v for k, v in found.items() if k.startswith("field:")},
            unnamed=tuple(unnamed),
        )


def _column_name(target: str, license_type: LicenseType) -> str:
    if not target.startswith("field:"):
        return target
    name = target[6:]
    label = license_type.labels.get(name)
    return f"{name} ({label})" if label else name


@dataclass(frozen=True)
class ImportFile:
    """A CSV file checked whole for a license type and department, read again row by row
    while importing (two passes: nothing but the current chunk is held in memory)."""

    path: Path
    sha256: str
    encoding: str
    total: int
    """Data rows (blank lines are not rows)."""
    columns: Columns
    license_type: LicenseType
    department: str

    @classmethod
    def open(cls, path: Path, license_type: LicenseType, department: str) -> ImportFile:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImportFileError(f"cannot read {path}: {exc.strerror}") from exc
        if size > MAX_FILE_BYTES:
            raise ImportFileTooLargeError(
                f"{path.name} has {size} bytes; an import file has at most {MAX_FILE_BYTES}"
            )
        for encoding in ENCODINGS:
            try:
                sha256, columns, total = _scan(path, encoding, license_type)
            except UnicodeDecodeError:
                continue
            return cls(path, sha256, encoding, total, columns, license_type, department)
        raise ImportFileError(f"{path.name} is neither UTF-8 nor GB18030 text")

    def rows(self, after: int = 0) -> Iterator[ImportRow]:
        """The data rows numbered above ``after``, parsed; ImportFileError at the end if the
        file is not the one checked (it changed since)."""
        with _open_text(self.path, self.encoding) as (text, reader):
            records = _records(csv.reader(text, strict=True))
            next(records)  # the header, checked by open()
            for number, cells in records:
                if number > after and not _blank(cells):
                    yield self.parse(number, cells)
            if reader.digest.hexdigest() != self.sha256:
                raise ImportFileError(f"{self.path.name} changed during the import")

    def parse(self, number: int, cells: list[str]) -> ImportRow:
        """Row ``number`` as an issuance request; every problem of its cells in one message."""
        values = [c.strip() for c in cells]
        columns = self.columns

        def cell(column: str) -> str:
            index = columns.standard.get(column)
            return values[index] if index is not None and index < len(values) else ""

        problems: list[str] = []
        holder_name, holder_code = cell("holder_name"), cell("holder_code")
        code_type = _code_type(cell("holder_code_type"), self.license_type, problems)
        if len(values) > columns.width and any(values[columns.width :]):
            problems.append(f"the row has {len(values)} cells, the header {columns.width}")
        if any(values[i] for i in columns.unnamed if i < len(values)):
            problems.append("a value under a column without a name")
        issue_date = _date_cell(cell("issue_date"), "issue_date", problems, required=True)
        valid_from = _date_cell(cell("valid_from"), "valid_from", problems)
        valid_to = None
        if cell("valid_to") != LONG_TERM:  # long-term, or the type's rule if it has one
            valid_to = _date_cell(cell("valid_to"), "valid_to", problems)
        properties: Mapping[str, Any] = self.license_type.schema.get("properties", {})
        data: dict[str, Any] = {}
        for name, index in columns.fields.items():
            text = values[index] if index < len(values) else ""
            if not text:
                continue  # absent: the schema says whether it may be
            try:
                data[name] = field_value(text, properties[name])
            except ImportRowError as exc:
                problems.append(
                    f"{_column_name(f'field:{name}', self.license_type)}: {exc.message}"
                )
        key = idempotency_key(self.sha256, number)
        masked = _masked(holder_code, code_type)
        if problems or code_type is None:
            error = str(ImportRowError("; ".join(problems)))
            return ImportRow(number, key, holder_name, masked, None, error)
        request = IssueRequest(
            type_code=self.license_type.code,
            department=self.department,
            holder_name=holder_name,
            holder_code=holder_code,
            holder_code_type=code_type,
            data=data,
            valid_from=valid_from,
            license_number=cell("license_number") or None,
            issue_date=issue_date,
            valid_to=valid_to,
        )
        return ImportRow(number, key, holder_name, masked, request)


class _HashingReader(io.RawIOBase):
    """Bytes of a file, hashed as they are read and capped at the size limit (the file could
    grow after its size was checked)."""

    def __init__(self, raw: io.FileIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer) or 0
        self.size += count
        if self.size > MAX_FILE_BYTES:
            raise ImportFileTooLargeError(f"an import file has at most {MAX_FILE_BYTES} bytes")
        self.digest.update(memoryview(buffer)[:count])
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextlib.contextmanager
def _open_text(path: Path, encoding: str) -> Iterator[tuple[IO[str], _HashingReader]]:
    try:
        raw = io.FileIO(path, "r")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from exc
    reader = _HashingReader(raw)
    # newline="": the csv module sees quoted line breaks inside cells as they are.
    with io.TextIOWrapper(io.BufferedReader(reader), encoding=encoding, newline="") as text:
        yield text, reader


def _scan(path: Path, encoding: str, license_type: LicenseType) -> tuple[str, Columns, int]:
    """Hash, header and row count of the file read as ``encoding`` (UnicodeDecodeError if it
    is not), refusing it for any limit or header problem."""
    with _open_text(path, encoding) as (text, reader):
        records = _records(csv.reader(text, strict=True))
        first = next(records, None)
        if first is None:
            raise ImportFileError(f"{path.name} is empty: a header row comes first")
        columns = Columns.of(first[1], license_type)
        total = 0
        for _number, cells in records:
            if not _blank(cells):
                total += 1
                if total > MAX_ROWS:
                    raise ImportFileTooLargeError(f"an import file has at most {MAX_ROWS} rows")
        return reader.digest.hexdigest(), columns, total


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """The records of a CSV file with their numbers (the header is 1), within the row limit."""
    number = 0
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise ImportFileTooLargeError(
                    f"row {number} is larger than {MAX_ROW_BYTES} bytes"
                ) from exc
            raise ImportFileError(f"row {number} is not valid CSV: {exc}") from exc
        if sum(map(len, cells)) * 4 > MAX_ROW_BYTES and _row_bytes(cells) > MAX_ROW_BYTES:
            raise ImportFileTooLargeError(f"row {number} is larger than {MAX_ROW_BYTES} bytes")
        yield number, cells


def _row_bytes(cells: list[str]) -> int:
    return len(",".join(cells).encode("utf-8", "surrogatepass"))


def _blank(cells: list[str]) -> bool:
    return not any(c.strip() for c in cells)


# --- cells --------------------------------------------------------------------------------

_DATE_FORMS = tuple(
    re.compile(form, re.ASCII)
    for form in (
        r"(\d{4})-(\d{1,2})-(\d{1,2})",
        r"(\d{4})/(\d{1,2})/(\d{1,2})",
        r"(\d{4})(\d{2})(\d{2})",
        r"(\d{4})年(\d{1,2})月(\d{1,2})日",
    )
)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_BOOLEANS = {
    **dict.fromkeys(("true", "yes", "y", "1", "是", "真"), True),
    **dict.fromkeys(("false", "no", "n", "0", "否", "假"), False),
}
_SEPARATORS = re.compile(r"[、;；]")
_CODE_TYPE_NAMES = {name: code for code, name in HOLDER_CODE_TYPES.items()}


def parse_date(text: str) -> date:
    """YYYY-MM-DD, YYYYMMDD, YYYY/MM/DD (months and days of one digit too, as spreadsheets
    show them) or YYYY年MM月DD日."""
    for form in _DATE_FORMS:
        match = form.fullmatch(text)
        if match:
            with contextlib.suppress(ValueError):
                return date(*map(int, match.groups()))
            break
    raise ImportRowError(f"not a date{_shown(text)}: YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD")


def field_value(text: str, schema: Mapping[str, Any]) -> Any:
    """A cell as the JSON value its field's schema declares: integer, number and boolean
    parsed, an array split at '、' or ';' (or given as JSON), an object given as JSON; a date
    field in any accepted date form normalised to YYYY-MM-DD. What does not parse is an error
    here; what parses but breaks the schema is the schema's to say."""
    kind = _declared_type(schema)
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise ImportRowError(f"not an integer{_shown(text)}")
        return int(text)
    if kind == "number":
        if _INTEGER.fullmatch(text):
            return int(text)
        value = float(text) if _NUMBER.fullmatch(text) else math.nan
        if not math.isfinite(value):
            raise ImportRowError(f"not a number{_shown(text)}")
        return value
    if kind == "boolean":
        flag = _BOOLEANS.get(text.lower())
        if flag is None:
            raise ImportRowError(f"not true or false (是/否){_shown(text)}")
        return flag
    if kind == "array":
        if text.startswith("["):
            return _json(text, list)
        items = schema.get("items")
        item_schema: Mapping[str, Any] = items if isinstance(items, Mapping) else {}
        parts = [p.strip() for p in _SEPARATORS.split(text)]
        return [field_value(p, item_schema) for p in parts if p]
    if kind == "object":
        return _json(text, dict)
    if schema.get("format") == "date":
        with contextlib.suppress(ImportRowError):
            return parse_date(text).isoformat()
    if kind is None:  # an enum or const of numbers or booleans, written as text
        for option in (*schema.get("enum", ()), *([schema["const"]] if "const" in schema else [])):
            if not isinstance(option, str) and json.dumps(option, ensure_ascii=False) == text:
                return option
    return text


def _declared_type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = "string" if "string" in kinds else next(iter(kinds), None)
    return kind if isinstance(kind, str) else None


def _json(text: str, expected: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportRowError(f"not JSON ({exc.msg})") from exc
    if not isinstance(value, expected):
        raise ImportRowError(f"not a JSON {'array' if expected is list else 'object'}")
    return value


def _shown(text: str) -> str:
    """The value, when short enough to be no ID number (messages end up in reports and logs)."""
    return f" ({text!r})" if len(text) <= 12 else ""


def _date_cell(
    text: str, column: str, problems: list[str], *, required: bool = False
) -> date | None:
    if not text:
        if required:
            problems.append(f"{column} is empty")
        return None
    try:
        return parse_date(text)
    except ImportRowError as exc:
        problems.append(f"{column}: {exc.message}")
        return None


def _code_type(text: str, license_type: LicenseType, problems: list[str]) -> str | None:
    """The holder code type: given by code, by name, or with the leading zeros a spreadsheet
    drops ("1" for "001"); the type's first when empty."""
    if not text:
        return license_type.holder_code_types[0]
    code = text.zfill(3) if text.isascii() and text.isdigit() else _CODE_TYPE_NAMES.get(text, text)
    if code not in HOLDER_CODE_TYPES:
        problems.append(f"holder_code_type{_shown(text)} is no GB/T 36903 holder code type")
        return None
    return code


def _masked(code: str, code_type: str | None) -> str:
    try:
        return mask_holder_code(code, code_type or "")
    except EtrustError:
        return "*" * len(code)


# --- report and progress ------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    imported: int = 0
    replayed: int = 0
    rejected: int = 0

    @property
    def done(self) -> int:
        return self.imported + self.replayed + self.rejected

    def plus(self, outcome: Outcome) -> Tally:
        return replace(self, **{outcome: getattr(self, outcome) + 1})


@dataclass(frozen=True)
class _Mark:
    """Where the import stands, replaced whole (one store: an interrupt between two stores
    cannot leave the report's length and the row number disagreeing)."""

    done_through: int = 0
    report_bytes: int = 0
    tally: Tally = Tally()


class ImportJournal:
    """The report of rejected rows and, while an import is unfinished, the progress file beside
    it. Results are recorded in row order, so "done through row N" is one number; the report
    is cut back to its length at that row when a run resumes, so no line appears twice."""

    def __init__(
        self, report: Path, source: ImportFile, *, save_interval: float = SAVE_INTERVAL_SECONDS
    ) -> None:
        self.report = report
        self.progress_path = report.with_name(report.name + PROGRESS_SUFFIX)
        self._source = source
        self._save_interval = save_interval
        self._mark = _Mark()
        self.resumed_after = 0
        self._file: IO[bytes] | None = None
        self._saved_at = time.monotonic()

    @property
    def tally(self) -> Tally:
        return self._mark.tally

    @property
    def done_through(self) -> int:
        return self._mark.done_through

    def __enter__(self) -> ImportJournal:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Lock the report, then resume from the progress file if it is this import's, else
        start the report afresh."""
        with contextlib.suppress(OSError):
            if self.report.resolve() == self._source.path.resolve():
                raise ImportFileError("the report would overwrite the import file")
        try:
            fd = os.open(self.report, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ImportFileError(f"cannot write the report {self.report}: {exc.strerror}") from exc
        file = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise ImportBusyError(f"another import is writing {self.report}") from None
        self._file = file
        saved = self._saved_mark(os.fstat(fd).st_size)
        if saved is not None:
            self._mark = saved
            self.resumed_after = saved.done_through
        else:
            with contextlib.suppress(FileNotFoundError):
                self.progress_path.unlink()
            header = codecs.BOM_UTF8 + _csv_line(REPORT_HEADER)  # BOM: Excel then reads UTF-8
            file.truncate(0)
            file.write(header)
            self._mark = _Mark(report_bytes=len(header))
        file.truncate(self._mark.report_bytes)
        file.seek(self._mark.report_bytes)

    def record(self, result: RowResult) -> None:
        """One row's result, in row order; the progress file is rewritten now and then."""
        mark = self._mark
        if result.row <= mark.done_through:
            raise RuntimeError(f"row {result.row} recorded after row {mark.done_through}")
        written = 0
        if result.outcome == "rejected":
            assert self._file is not None
            line = _csv_line(
                (result.row, _inert(result.holder_name), result.code, _inert(result.message or ""))
            )
            self._file.write(line)
            written = len(line)
        self._mark = _Mark(result.row, mark.report_bytes + written, mark.tally.plus(result.outcome))
        if time.monotonic() - self._saved_at >= self._save_interval:
            self.save()

    def save(self) -> None:
        """Report to disk, then the progress file (written aside and renamed: it is whole or
        it is the previous one). Licenses are committed before their result reaches us, so
        the progress file never runs ahead of the database."""
        if self._file is None:
            return
        mark = self._mark
        self._file.flush()
        os.fsync(self._file.fileno())
        source = self._source
        progress = {
            "version": 1,
            "file_sha256": source.sha256,
            "type": source.license_type.code,
            "department": source.department,
            "done_through": mark.done_through,
            "report_bytes": mark.report_bytes,
            "imported": mark.tally.imported,
            "replayed": mark.tally.replayed,
            "rejected": mark.tally.rejected,
        }
        temporary = self.progress_path.with_name(self.progress_path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(progress, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.progress_path)
        _sync_folder(self.progress_path.parent)
        self._saved_at = time.monotonic()

    def finish(self) -> None:
        """The import is complete: the report stays, the progress file goes (a run again goes
        through every row, answered from the idempotency table)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        with contextlib.suppress(FileNotFoundError):
            self.progress_path.unlink()
        _sync_folder(self.progress_path.parent)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # and the lock with it
            self._file = None

    def _saved_mark(self, report_size: int) -> _Mark | None:
        """The progress file's mark if it is this import's and fits the report, else None."""
        try:
            saved = json.loads(self.progress_path.read_text("utf-8"))
            source = self._source
            if (
                saved["version"],
                saved["file_sha256"],
                saved["type"],
                saved["department"],
            ) != (1, source.sha256, source.license_type.code, source.department):
                return None
            counts = [
                saved[k]
                for k in ("done_through", "report_bytes", "imported", "replayed", "rejected")
            ]
            if not all(type(c) is int and c >= 0 for c in counts):
                return None
            done_through, report_bytes, imported, replayed, rejected = counts
            if not 0 < report_bytes <= report_size or imported + replayed + rejected > source.total:
                return None
            return _Mark(done_through, report_bytes, Tally(imported, replayed, rejected))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _csv_line(cells: Iterable[object]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue().encode("utf-8", "backslashreplace")


def _inert(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (the report is opened in Excel)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _sync_folder(folder: Path) -> None:
    """Make a rename or unlink durable (POSIX: fsync the directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the run ------------------------------------------------------------------------------

RowIssuer = Callable[[Iterable[ImportRow]], Iterable[RowResult]]
"""Issues rows and yields one result per row, in row order (in-process, or a process pool)."""


@dataclass(frozen=True)
class ImportSummary:
    tally: Tally
    rows: int
    processed: int
    """Rows this run went through (a resumed run skips those done before)."""
    seconds: float
    report: Path
    resumed_after: int

    @property
    def rate(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "imported": self.tally.imported,
            "replayed": self.tally.replayed,
            "rejected": self.tally.rejected,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "report": str(self.report),
            "resumed_after": self.resumed_after,
        }


def run_import(
    source: ImportFile,
    journal: ImportJournal,
    issue: RowIssuer,
    on_result: Callable[[Tally], None] | None = None,
) -> ImportSummary:
    """Import the rows after the journal's mark. Counts include the rows of earlier runs of
    the same import. A stop other than Ctrl-C saves the progress and raises
    ImportInterruptedError; Ctrl-C saves it and goes on up."""
    started = time.monotonic()
    resumed_after = journal.done_through
    results = iter(issue(source.rows(after=resumed_after)))
    processed = 0
    try:
        for result in results:
            journal.record(result)
            processed += 1
            if on_result is not None:
                on_result(journal.tally)
    except BaseException as exc:
        journal.save()
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit
        cause = str(exc) if isinstance(exc, EtrustError) else f"unexpected {type(exc).__name__}"
        done = journal.done_through
        where = f"after row {done}" if done else "before its first row"
        raise ImportInterruptedError(
            f"the import stopped {where} ({cause}); progress is saved beside the report: "
            "run the same command again to resume"
        ) from exc
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
    journal.finish()
    return ImportSummary(
        tally=journal.tally,
        rows=source.total,
        processed=processed,
        seconds=time.monotonic() - started,
        report=journal.report,
        resumed_after=resumed_after,
    )
