"""``etrust license import``: historical licenses from a CSV file, on a demo home. Bad rows go
to the report and the rest are issued; a second run issues nothing twice; an interrupted run
resumes; headers by field name or Chinese label, UTF-8 with or without BOM and GB18030; a
header that does not fit refuses the file before anything is issued; a pool of workers gives
what one process gives; and the same on PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE, demo_license_types
from etrust.import_cli import ProgressBar
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from license_store import bulk_import
from license_store.bulk_import import (
    ImportBusyError,
    ImportFile,
    ImportFileError,
    ImportFileTooLargeError,
    ImportJournal,
    ImportRowError,
    RowResult,
    Tally,
    field_value,
    parse_date,
)
from license_store.holder_codes import resident_id_check
from license_store.issuance import LicenseService
from license_store.models import IdempotencyRow, LicenseRow
from license_store.types import LicenseType
from storage.engine import transaction
from tests.cli_run import run

pytest_plugins = ["tests.db_fixtures"]

WORKER = demo_license_types()[0]
COMPANY = demo_license_types()[1]
HEADER = [
    "holder_name",
    "holder_code",
    "issue_date",
    "valid_from",
    "valid_to",
    "gender",
    "birth_date",
    "category",
]
BAD_CHECK_DIGIT, BAD_GENDER, ENDS_BEFORE_START = 4, 11, 20
"""Indexes of the bad rows among the 30 data rows (row numbers 6, 13 and 22)."""


def person_id(seed: int) -> str:
    body = f"15250119{70 + seed % 30:02d}{1 + seed % 12:02d}{10 + seed % 18:02d}{seed % 1000:03d}"
    return body + resident_id_check(body)


def worker_rows(count: int = 30, offset: int = 0) -> list[list[str]]:
    """``count`` rows of the person type, the three bad ones among them, in every date form."""
    rows = []
    for i in range(count):
        seed = offset + i
        code = person_id(seed)
        issued = date(2015 + seed % 8, 1 + seed % 12, 1 + seed % 28)
        forms = (issued.isoformat(), issued.strftime("%Y%m%d"), issued.strftime("%Y/%m/%d"))
        valid_to = "" if i % 3 == 0 else date(issued.year + 3, issued.month, 1).isoformat()
        gender = "女" if i % 2 else "男"
        if i == BAD_CHECK_DIGIT:
            code = code[:17] + ("1" if code[17] != "1" else "2")
        if i == BAD_GENDER:
            gender = "女性"
        if i == ENDS_BEFORE_START:
            valid_to = date(issued.year - 1, 1, 1).isoformat()
        rows.append(
            [f"工人{seed}", code, forms[i % 3], "", valid_to, gender, "1990-05-17", "建筑焊工"]
        )
    return rows


def write_csv(
    path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8"
) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def import_(
    capsys: pytest.CaptureFixture[str], home: Path, file: Path, *extra: str, kind: str = WORKER.code
) -> tuple[int, dict[str, Any], str]:
    code, out, err = run(
        capsys, "--home", str(home), "license", "import", str(file), "--type", kind,
        "--department", DEMO_DEPARTMENT_CODE, "--json", *extra,
    )  # fmt: skip
    return code, json.loads(out) if out.strip() else {}, err


def licenses(home: Path, type_code: str = WORKER.code) -> list[LicenseRow]:
    rt = open_runtime(load_settings(home))
    try:
        with transaction(rt.sessions) as session:
            query = select(LicenseRow).where(LicenseRow.type_code == type_code)
            return list(session.scalars(query.order_by(LicenseRow.id)))
    finally:
        rt.close()


def report_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8-sig"))))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo home (SQLite), copied for each test: init takes a while, a copy does not."""
    path = tmp_path_factory.mktemp("import-template") / "home"
    assert main(["--home", str(path), "init", "--demo"]) == 0
    return path


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "home"
    shutil.copytree(template, path)
    return path


def test_bad_rows_are_reported_and_a_second_run_issues_nothing(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(licenses(home))
    file = write_csv(tmp_path / "workers.csv", HEADER, worker_rows())
    code, summary, err = import_(capsys, home, file, "--workers", "1")
    assert code == 3, err
    assert summary["imported"] == 27 and summary["rejected"] == 3 and summary["replayed"] == 0
    assert summary["rows"] == 30 and summary["report"] == f"{file}.rejected.csv"
    assert len(licenses(home)) == before + 27

    rejected = report_rows(Path(summary["report"]))
    assert [r["row"] for r in rejected] == ["6", "13", "22"]  # the header is row 1
    assert "HOLDER_CODE_INVALID" in rejected[0]["message"]
    assert "LICENSE_DATA_INVALID" in rejected[1]["message"]
    assert "end before it starts" in rejected[2]["message"]
    report_text = Path(summary["report"]).read_text("utf-8-sig")
    for i, row in zip((BAD_CHECK_DIGIT, BAD_GENDER, ENDS_BEFORE_START), rejected, strict=True):
        full = worker_rows()[i][1]
        assert row["code"] == full[:6] + "*" * 8 + full[-4:]
        assert full not in report_text
    assert not Path(f"{summary['report']}.progress").exists()  # finished: nothing to resume

    code, again, err = import_(capsys, home, file, "--workers", "1")
    assert code == 3, err
    assert (again["imported"], again["replayed"], again["rejected"]) == (0, 27, 3)
    assert len(licenses(home)) == before + 27  # nothing issued twice
    assert [r["row"] for r in report_rows(Path(again["report"]))] == ["6", "13", "22"]


def test_imported_licenses_keep_their_historical_dates(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = worker_rows(6)
    rows[1][3] = "2016/3/1"  # its own start, later than its issue date
    rows[2][4] = "长期"  # not a long-term type: the type's rule (2 years) applies
    file = write_csv(tmp_path / "dates.csv", HEADER, rows)
    code, summary, err = import_(
        capsys, home, file, "--workers", "1", "--report", str(tmp_path / "r.csv")
    )
    assert code == 3 and summary["imported"] == 5, err  # row 6 (index 4) has a bad check digit
    by_code = {row.holder_code: row.identifier for row in licenses(home)}
    for i in (0, 1, 2, 3):
        code, out, err = run(
            capsys, "--home", str(home), "license", "show", by_code[rows[i][1]], "--json"
        )
        assert code == 0, err
        shown = json.loads(out)
        issued = date(2015 + i % 8, 1 + i % 12, 1 + i % 28)
        valid_from = date(2016, 3, 1) if i == 1 else issued
        valid_to = (
            valid_from.replace(year=valid_from.year + 2)
            if i in (0, 2, 3)  # empty or 长期: the type's 2 years
            else date(issued.year + 3, issued.month, 1)
        )
        assert shown["issue_date"] == issued.isoformat()
        assert shown["valid_from"] == valid_from.isoformat()
        assert shown["valid_to"] == valid_to.isoformat()
        assert shown["data"] == {
            "gender": rows[i][5],
            "birth_date": "1990-05-17",
            "category": "建筑焊工",
        }
        assert shown["status"] == ("expired" if valid_to < date.today() else "valid")


@pytest.mark.parametrize("progress_kept", [True, False], ids=["progress", "no-progress"])
def test_an_interrupted_import_resumes_without_issuing_twice(
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    progress_kept: bool,
) -> None:
    """A crash on the 15th row; without the progress file (lost, as after a power cut) the
    rows done before are answered from the idempotency table instead of skipped."""
    rows = worker_rows()
    file = write_csv(tmp_path / "crash.csv", HEADER, rows)
    issue = LicenseService.issue

    def crashing(self: LicenseService, request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.holder_code == rows[14][1]:
            raise RuntimeError("the power went out")
        return issue(self, request, *args, **kwargs)

    monkeypatch.setattr(LicenseService, "issue", crashing)
    code, error, _ = import_(capsys, home, file, "--workers", "1")
    assert code == 1 and error["error"] == "IMPORT_INTERRUPTED"  # --json: errors on stdout
    monkeypatch.undo()
    progress_path = Path(f"{file}.rejected.csv.progress")
    progress = json.loads(progress_path.read_text())
    assert progress["done_through"] == 15  # data rows 1-14 are rows 2-15
    assert progress["imported"] == 12 and progress["rejected"] == 2
    assert len(licenses(home)) == 1 + 12  # the demo's one, and the good ones of rows 2-15
    if not progress_kept:
        progress_path.unlink()

    code, summary, err = import_(capsys, home, file, "--workers", "1")
    assert code == 3, err
    assert len(licenses(home)) == 1 + 27
    if progress_kept:
        assert summary["resumed_after"] == 15
        assert (summary["imported"], summary["replayed"], summary["rejected"]) == (27, 0, 3)
    else:
        assert summary["resumed_after"] == 0
        assert (summary["imported"], summary["replayed"], summary["rejected"]) == (15, 12, 3)
    assert [r["row"] for r in report_rows(Path(summary["report"]))] == ["6", "13", "22"]


def test_the_interruption_is_reported(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write_csv(tmp_path / "stop.csv", HEADER, worker_rows(3))

    def crashing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(LicenseService, "issue", crashing)
    code, _, err = run(
        capsys, "--home", str(home), "license", "import", str(file), "--type", WORKER.code,
        "--department", DEMO_DEPARTMENT_CODE, "--workers", "1",
    )  # fmt: skip
    assert code == 1
    assert "IMPORT_INTERRUPTED" in err and "before its first row" in err and "RuntimeError" in err
    assert "secret detail" not in err


def test_chinese_labels_and_a_long_term_type(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = [
        "持证主体名称",
        "持证主体代码",
        "持证主体代码类型",
        "证照编号",
        "发证日期",
        "有效期截止日期",
    ]
    header += ["类型", "法定代表人", "注册资本", "成立日期", "住所", "经营范围"]
    uscc = "91152502MA0N1A2B3A"
    row = [
        "锡林浩特示范牧业有限公司", uscc.lower(), "1", "No.2019-0001", "2019年5月20日", "长期",
        "有限责任公司", "赵六", "伍拾万元整", "2019/5/20", "锡林浩特市示范路2号", "牧业；畜产品销售。",
    ]  # fmt: skip
    file = write_csv(tmp_path / "companies.csv", header, [row])
    code, summary, err = import_(capsys, home, file, "--workers", "1", kind=COMPANY.code)
    assert code == 0 and summary["imported"] == 1, err
    found = [lic for lic in licenses(home, COMPANY.code) if lic.license_number == "No.2019-0001"]
    assert len(found) == 1
    lic = found[0]
    assert (lic.holder_code, lic.holder_code_type) == (uscc, "001")
    assert (lic.issue_date, lic.valid_from, lic.valid_to) == (date(2019, 5, 20),) * 2 + (None,)
    data = json.loads(lic.data)
    assert data["founded"] == "2019-05-20" and data["legal_representative"] == "赵六"


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
def test_gb18030_and_bom(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str
) -> None:
    header = ["holder_name", "holder_code", "发证日期", "性别", "出生日期", "操作类别"]
    rows = [
        [f"张{i}", person_id(500 + i), "2020-01-02", "男", "1990-05-17", "建筑电工"]
        for i in range(3)
    ]
    file = write_csv(tmp_path / f"{encoding}.csv", header, rows, encoding)
    assert file.read_bytes().startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    code, summary, err = import_(capsys, home, file, "--workers", "1")
    assert code == 0 and summary["imported"] == 3, err
    names = {lic.holder_name for lic in licenses(home)}
    assert {"张0", "张1", "张2"} <= names


def test_a_header_that_does_not_fit_refuses_the_file(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(licenses(home))
    typo = [*HEADER[:5], "gendr", *HEADER[6:], "备注"]
    file = write_csv(tmp_path / "typo.csv", typo, [[*r, "x"] for r in worker_rows(3)])
    code, out, _ = run(
        capsys, "--home", str(home), "license", "import", str(file), "--type", WORKER.code,
        "--department", DEMO_DEPARTMENT_CODE, "--json",
    )  # fmt: skip
    error = json.loads(out)
    assert code == 1 and error["error"] == "IMPORT_FILE_INVALID"
    assert "'gendr'" in error["message"] and "'备注'" in error["message"]
    assert "missing required columns gender (性别)" in error["message"]
    assert len(licenses(home)) == before
    assert not Path(f"{file}.rejected.csv").exists()

    twice = write_csv(tmp_path / "twice.csv", [*HEADER, "性别"], [])
    code, refused, _ = import_(capsys, home, twice)
    assert code == 1 and "columns given twice '性别'" in refused["message"]
    missing = write_csv(tmp_path / "missing.csv", HEADER[:2] + HEADER[3:], [])
    code, refused, _ = import_(capsys, home, missing)
    assert code == 1 and "missing required columns issue_date" in refused["message"]


def test_two_workers_import_what_one_does(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_csv(tmp_path / "pool.csv", HEADER, worker_rows())
    results = []
    for workers in ("1", "2"):
        home = tmp_path / f"home-{workers}"
        shutil.copytree(template, home)
        report = tmp_path / f"report-{workers}.csv"
        code, summary, err = import_(
            capsys, home, file, "--workers", workers, "--report", str(report)
        )
        assert code == 3, err
        assert (summary["imported"], summary["rejected"]) == (27, 3)
        imported = sorted(
            (lic.holder_code, lic.issue_date, lic.valid_from, lic.valid_to, lic.data)
            for lic in licenses(home)
        )
        serials = sorted(lic.identifier.split(".")[-3] for lic in licenses(home))
        results.append((imported, report.read_bytes(), len(set(serials))))
    assert results[0] == results[1]
    assert results[1][2] == 28  # distinct serials: the demo's license and the 27


def test_the_idempotency_keys_name_the_file_and_row(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_csv(tmp_path / "keys.csv", HEADER, worker_rows(2))
    code, _, err = import_(capsys, home, file, "--workers", "1")
    assert code == 0, err
    rt = open_runtime(load_settings(home))
    try:
        with transaction(rt.sessions) as session:
            keys = session.scalars(
                select(IdempotencyRow.key).where(IdempotencyRow.client == "import")
            ).all()
            assert session.scalar(select(func.count()).select_from(IdempotencyRow)) == 2
    finally:
        rt.close()
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:32]
    assert sorted(keys) == [f"import:{digest}:2", f"import:{digest}:3"]


@pytest.mark.postgres
def test_on_postgresql_with_workers(
    postgres_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETRUST_DATABASE_URL", postgres_database)  # the workers inherit it
    home = tmp_path / "home"
    assert main(["--home", str(home), "init", "--demo"]) == 0
    file = write_csv(tmp_path / "pg.csv", HEADER, worker_rows())
    code, summary, err = import_(capsys, home, file, "--workers", "2")
    assert code == 3, err
    assert (summary["imported"], summary["rejected"]) == (27, 3)
    code, again, err = import_(capsys, home, file, "--workers", "2")
    assert (again["imported"], again["replayed"]) == (0, 27), err
    assert len(licenses(home)) == 1 + 27


# --- the parts, without a home ------------------------------------------------------------

TYPED = LicenseType(
    code="11100000000013338W099",
    name="测试",
    authority="测试",
    holder_kind="person",
    schema={
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "score": {"type": "number"},
            "active": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "levels": {"type": "array", "items": {"type": "integer"}},
            "extra": {"type": "object"},
            "note": {"type": ["string", "null"]},
            "grade": {"enum": [1, 2, 3]},
            "since": {"type": "string", "format": "date"},
        },
    },
    labels={"count": "数量", "tags": "标签"},
)


def test_cells_parse_by_the_schema() -> None:
    props = TYPED.schema["properties"]
    assert field_value("12", props["count"]) == 12
    assert field_value("-3", props["score"]) == -3 and field_value("2.5", props["score"]) == 2.5
    assert (
        field_value("是", props["active"]) is True
        and field_value("false", props["active"]) is False
    )
    assert field_value("电工、焊工; 架子工；", props["tags"]) == ["电工", "焊工", "架子工"]
    assert field_value('["a;b"]', props["tags"]) == ["a;b"]
    assert field_value("1;2、3", props["levels"]) == [1, 2, 3]
    assert field_value('{"k": 1}', props["extra"]) == {"k": 1}
    assert field_value("007", props["note"]) == "007"
    assert field_value("2", props["grade"]) == 2
    assert field_value("20200102", props["since"]) == "2020-01-02"
    for text, prop in (("1.5", "count"), ("nan", "score"), ("maybe", "active"), ("[1", "extra")):
        with pytest.raises(ImportRowError):
            field_value(text, props[prop])
    for text in ("2020-01-02", "20200102", "2020/01/02", "2020/1/2", "2020年1月2日"):
        assert parse_date(text) == date(2020, 1, 2)
    for text in ("2020-02-30", "02/01/2020", "２０２０0102", "2020-01-02x"):
        with pytest.raises(ImportRowError):
            parse_date(text)


def test_row_problems_are_collected(tmp_path: Path) -> None:
    file = write_csv(
        tmp_path / "typed.csv",
        ["holder_name", "holder_code", "issue_date", "数量", "标签", ""],
        [
            ["甲", person_id(1), "2020-01-01", "3", "a、b", ""],
            ["乙", person_id(2), "2020-13-01", "x", "", "stray"],
            [""] * 6,  # a blank line: not a row
            ["丙", person_id(3), "", "", "", "", "extra"],
        ],
    )
    source = ImportFile.open(file, TYPED, "dept")
    assert source.total == 3 and source.encoding == "utf-8-sig"
    good, bad, worse = list(source.rows())
    assert good.request is not None and good.request.data == {"count": 3, "tags": ["a", "b"]}
    assert good.request.holder_code_type == "111" and good.key.endswith(":2")
    assert bad.request is None and bad.error is not None and bad.row == 3
    assert (
        "issue_date" in bad.error and "count (数量)" in bad.error and "without a name" in bad.error
    )
    assert worse.row == 5 and worse.error is not None
    assert "issue_date is empty" in worse.error and "7 cells" in worse.error
    assert [r.row for r in source.rows(after=3)] == [5]


def test_limits_refuse_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = ["holder_name", "holder_code", "issue_date"]
    big = write_csv(tmp_path / "big.csv", header, [["x" * 70_000, "1", "2020-01-01"]])
    with pytest.raises(ImportFileTooLargeError, match="row 2"):
        ImportFile.open(big, TYPED, "dept")
    rows = write_csv(tmp_path / "rows.csv", header, [["a", "1", "2020-01-01"]] * 6)
    monkeypatch.setattr(bulk_import, "MAX_ROWS", 5)
    with pytest.raises(ImportFileTooLargeError, match="5 rows"):
        ImportFile.open(rows, TYPED, "dept")
    monkeypatch.setattr(bulk_import, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImportFileTooLargeError):
        ImportFile.open(rows, TYPED, "dept")
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"holder_name,holder_code,issue_date\r\n\xff\xfe\xff,1,2\r\n")
    with pytest.raises(ImportFileError, match="neither UTF-8 nor GB18030"):
        ImportFile.open(garbage, TYPED, "dept")
    quotes = tmp_path / "quotes.csv"
    quotes.write_text('holder_name,holder_code,issue_date\r\n"a"b,1,2\r\n', "utf-8")
    with pytest.raises(ImportFileError, match="row 2 is not valid CSV"):
        ImportFile.open(quotes, TYPED, "dept")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ImportFileError, match="empty"):
        ImportFile.open(empty, TYPED, "dept")


def test_progress_belongs_to_one_file(tmp_path: Path) -> None:
    header = ["holder_name", "holder_code", "issue_date"]
    first = write_csv(tmp_path / "in.csv", header, [["a", "1", "2020-01-01"]] * 3)
    report = tmp_path / "report.csv"
    source = ImportFile.open(first, TYPED, "dept")
    with ImportJournal(report, source) as journal:
        journal.record(RowResult(2, "rejected", "=HYPERLINK(x)", "1", message="bad"))
        journal.record(RowResult(3, "imported", "a", "1"))
        journal.save()
        with pytest.raises(ImportBusyError):
            ImportJournal(report, source).open()
    with ImportJournal(report, source) as resumed:
        assert resumed.resumed_after == 3 and resumed.tally == Tally(imported=1, rejected=1)
    lines = report.read_text("utf-8-sig").splitlines()
    assert lines == ["row,holder_name,code,message", "2,'=HYPERLINK(x),1,bad"]
    other = write_csv(tmp_path / "in.csv", header, [["b", "1", "2020-01-01"]] * 3)
    with ImportJournal(report, ImportFile.open(other, TYPED, "dept")) as fresh:
        assert fresh.resumed_after == 0 and fresh.tally == Tally()
    assert report.read_text("utf-8-sig").splitlines() == ["row,holder_name,code,message"]
    with pytest.raises(ImportFileError, match="overwrite"):
        ImportJournal(first, source).open()


def test_progress_bar_draws_at_most_ten_times_a_second() -> None:
    clock = iter([0.0, 0.05, 0.08, 0.5, 2.0])
    stream = io.StringIO()
    bar = ProgressBar(stream, total=100, done=0, clock=lambda: next(clock))  # started at 0.0
    bar(Tally(imported=1))  # at 0.05: drawn (the first)
    bar(Tally(imported=2))  # at 0.08: too soon
    bar(Tally(imported=48, rejected=2))  # at 0.5
    bar.close()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 2
    assert "1/100 rows" in frames[0]
    assert frames[1].startswith("[############............] 50/100 rows, 2 rejected  100.0/s")
    assert "ETA 0:01" in frames[1] and frames[1].endswith("\n")


def test_a_file_changed_during_the_import_is_noticed(tmp_path: Path) -> None:
    header = ["holder_name", "holder_code", "issue_date"]
    file = write_csv(tmp_path / "in.csv", header, [["a", "1", "2020-01-01"]] * 3)
    source = ImportFile.open(file, TYPED, "dept")
    write_csv(file, header, [["b", "1", "2020-01-01"]] * 3)
    rows = source.rows()
    assert [r.holder_name for r in islice(rows, 3)] == ["b"] * 3
    with pytest.raises(ImportFileError, match="changed during the import"):
        next(rows)
