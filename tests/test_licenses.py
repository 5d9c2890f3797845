"""The license registry end to end, on SQLite and on PostgreSQL: issue over the API and the
command line, read, export and verify the sealed documents, revoke, and the transparency log
that records it all; and what bad input gets."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from etrust.app import create_app
from etrust.demo import DEMO_DEPARTMENT_CODE, demo_license_types
from etrust.licenses import license_service
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from license_store.consistency import status_problems
from license_store.holder_codes import resident_id_check
from license_store.identifiers import LicenseId
from license_store.models import (
    LicenseEventRow,
    LicenseFileRow,
    LicenseRow,
    LogEntryRow,
    LogNodeRow,
)
from license_store.status_list import read_status_list
from license_store.translog import verify_checkpoint
from signing import license_qr
from signing.qr import qr_symbol
from storage.engine import transaction
from tests.cli_run import run
from tests.db_fixtures import BACKENDS, demo_home
from tests.officers import api_headers
from trust import merkle
from trust.algorithms import SM2_SM3
from trust.errors import EtrustError, InvalidSignatureError, MalformedInputError

pytest_plugins = ["tests.db_fixtures"]

WORKER = demo_license_types()[0]
COMPANY = demo_license_types()[1]


def person_id(seed: int) -> str:
    body = f"15250119{80 + seed % 20:02d}0{1 + seed % 9}{10 + seed % 18:02d}{seed % 1000:03d}"
    return body + resident_id_check(body)


@pytest.fixture(scope="module", params=BACKENDS)
def home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A demo home (departments, seals, two license types) on each database."""
    yield from demo_home(request, tmp_path_factory.mktemp(f"licenses-{request.param}"))


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home))) as c:
        yield c


@pytest.fixture(scope="module")
def department(home: Path) -> dict[str, str]:
    return api_headers(home, "dept-client", "department", DEMO_DEPARTMENT_CODE)


def issue_body(seed: int, **changes: Any) -> dict[str, Any]:
    body = {
        "type_code": WORKER.code,
        "holder_name": "李四",
        "holder_code": person_id(seed),
        "data": {"gender": "女", "birth_date": "1985-11-21", "category": "建筑焊工"},
    }
    return {**body, **changes}


def test_demo_types_and_licenses(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--home", str(home), "license-type", "list", "--json")
    assert code == 0, err
    listed = {t["code"]: t for t in json.loads(out)}
    assert set(listed) == {WORKER.code, COMPANY.code}
    assert listed[WORKER.code]["issuers"] == [DEMO_DEPARTMENT_CODE]
    code, out, _ = run(capsys, "--home", str(home), "license-type", "show", COMPANY.code, "--json")
    shown = json.loads(out)
    assert shown["schema"]["required"] and shown["example"]["legal_representative"] == "王五"
    assert list(shown["labels"]) == list(COMPANY.labels)  # the print order survives storage


def test_issue_over_the_api(
    home: Path, client: TestClient, department: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {**department, "Idempotency-Key": "case-2026-0001"}
    resp = client.post("/api/v1/licenses", json=issue_body(1), headers=headers)
    assert resp.status_code == 201, resp.text
    issued = resp.json()
    identifier = issued["identifier"]
    parsed = LicenseId.parse(identifier)  # a well-formed GB/T 36904 identifier
    assert (parsed.type_code, parsed.version) == (WORKER.code, 1)
    assert resp.headers["Location"].endswith(identifier)

    # The same request again: the same license, not a second one; another body: refused.
    again = client.post("/api/v1/licenses", json=issue_body(1), headers=headers)
    assert again.status_code == 200 and again.json()["identifier"] == identifier
    assert again.json()["replayed"] is True
    other = client.post("/api/v1/licenses", json=issue_body(2), headers=headers)
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")

    # The answer's inclusion proof holds against its signed checkpoint.
    log = issued["log"]
    checkpoint = log["checkpoint"]
    entry = client.get(
        "/api/v1/log/proof/inclusion", params={"index": log["index"], "size": checkpoint["size"]}
    ).json()["entry"]
    merkle.verify_inclusion(
        merkle.leaf_hash(entry.encode()),
        log["index"],
        checkpoint["size"],
        [base64.b64decode(h) for h in log["inclusion_proof"]],
        base64.b64decode(checkpoint["root"]),
    )
    assert json.loads(entry)["identifier"] == identifier
    rt = open_runtime(load_settings(home))
    try:
        verify_checkpoint(license_service(rt).log.latest(), _log_public_key(rt))
    finally:
        rt.close()

    # The issuer reads it, holder data in full; the sealed documents verify.
    shown = client.get(f"/api/v1/licenses/{identifier}", headers=department).json()
    assert shown["holder_code"] == person_id(1) and shown["status"] == "valid"
    assert [e["action"] for e in shown["events"]] == ["issue"]
    for fmt, magic in (("ofd", b"PK"), ("pdf", b"%PDF")):
        doc = client.get(f"/api/v1/licenses/{identifier}/document.{fmt}", headers=department)
        assert doc.status_code == 200 and doc.content.startswith(magic)
        path = home / f"api-{parsed.serial}.{fmt}"
        path.write_bytes(doc.content)
        code, out, err = run(capsys, "--home", str(home), "verify", str(path), "--json")
        assert code == 0, out + err
    with zipfile.ZipFile(io.BytesIO(doc_bytes(client, identifier, department))) as ofd:
        ofd_xml = ofd.read("OFD.xml").decode()
    assert identifier in ofd_xml and "ZZBS" in ofd_xml  # GB/T 36903 metadata inside


def doc_bytes(client: TestClient, identifier: str, headers: dict[str, str]) -> bytes:
    return client.get(f"/api/v1/licenses/{identifier}/document.ofd", headers=headers).content


def _log_public_key(rt: Any) -> Any:
    from etrust.pki import LOG_IDENTITY

    return rt.keys.find(rt.identities.get(LOG_IDENTITY).key_uri).public_key_info


def test_other_departments_learn_nothing(
    home: Path, client: TestClient, department: dict[str, str]
) -> None:
    issued = client.post("/api/v1/licenses", json=issue_body(3), headers=department).json()
    identifier = issued["identifier"]
    stranger = api_headers(home, "stranger-dept", "department", "152900-other")
    for url in (f"/api/v1/licenses/{identifier}", f"/api/v1/licenses/{identifier}/document.pdf"):
        assert client.get(url, headers=stranger).status_code == 404
    assert client.get("/api/v1/licenses/1.2.156.3005.2.nope", headers=stranger).status_code == 404
    # nor may it issue this type
    resp = client.post(
        "/api/v1/licenses",
        json=issue_body(4, department="152900-other"),
        headers=stranger,
    )
    assert (resp.status_code, resp.json()["code"]) == (403, "ISSUER_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"holder_code": "152501199003071235"}, 400, "HOLDER_CODE_INVALID"),  # check digit
        ({"holder_code_type": "001"}, 422, "LICENSE_DATA_INVALID"),  # not this type's holders
        ({"data": {"gender": "未知", "birth_date": "1990-02-30"}}, 422, "LICENSE_DATA_INVALID"),
        (
            {"data": {"gender": "男", "birth_date": "1990-01-01", "category": "x", "y": 1}},
            422,
            "LICENSE_DATA_INVALID",
        ),
        ({"holder_name": "张三\n李四"}, 400, "MALFORMED_INPUT"),
        ({"type_code": "11100000000013338W099"}, 404, "NOT_FOUND"),
    ],
)
def test_bad_requests_are_refused_and_leave_nothing(
    home: Path,
    client: TestClient,
    department: dict[str, str],
    changes: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = _counts(home)
    resp = client.post("/api/v1/licenses", json=issue_body(5, **changes), headers=department)
    assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
    if code == "LICENSE_DATA_INVALID" and "data" in changes:
        detail = resp.json()["detail"]
        assert "gender" in detail or "additional" in detail.lower(), detail
    assert _counts(home) == before


def _counts(home: Path) -> tuple[int, ...]:
    rt = open_runtime(load_settings(home))
    try:
        with transaction(rt.sessions) as session:
            return tuple(
                session.scalar(select(func.count()).select_from(t)) or 0
                for t in (LicenseRow, LicenseFileRow, LicenseEventRow, LogEntryRow, LogNodeRow)
            )
    finally:
        rt.close()


def test_a_database_failure_mid_issuance_leaves_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_runtime(load_settings(home))
    try:
        from etrust.licenses import department_signer
        from license_store.issuance import IssueRequest

        service = license_service(rt)
        before = _counts(home)

        def failing(session: Any) -> Any:
            raise RuntimeError("the database went away")

        monkeypatch.setattr(service.log, "sign_head", failing)
        request = IssueRequest(
            type_code=WORKER.code,
            department=DEMO_DEPARTMENT_CODE,
            holder_name="王五",
            holder_code=person_id(6),
            data=WORKER.example,
        )
        with pytest.raises(RuntimeError):
            service.issue(request, department_signer(rt, DEMO_DEPARTMENT_CODE), "test")
        assert _counts(home) == before  # no license, file, event or log entry
        monkeypatch.undo()
        issued = service.issue(request, department_signer(rt, DEMO_DEPARTMENT_CODE), "test")
        assert issued.license.status == "valid"
    finally:
        rt.close()


def test_concurrent_issuances_get_distinct_serials(
    home: Path, client: TestClient, department: dict[str, str]
) -> None:
    results: list[str] = []
    errors: list[str] = []

    def issue(seed: int) -> None:
        resp = client.post("/api/v1/licenses", json=issue_body(100 + seed), headers=department)
        (results if resp.status_code == 201 else errors).append(
            resp.json().get("identifier") or resp.text
        )

    threads = [threading.Thread(target=issue, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    serials = [LicenseId.parse(i).serial for i in results]
    assert len(set(serials)) == len(serials) == 8


def test_revoke_shows_in_status_events_and_log(
    home: Path, client: TestClient, department: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    identifier = client.post("/api/v1/licenses", json=issue_body(7), headers=department).json()[
        "identifier"
    ]
    size_before = client.get("/api/v1/log/checkpoint").json()["size"]
    code, out, err = run(
        capsys,
        "--home",
        str(home),
        "license",
        "revoke",
        identifier,
        "--reason",
        "证书信息有误",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "revoked"
    shown = client.get(f"/api/v1/licenses/{identifier}", headers=department).json()
    assert shown["status"] == "revoked" and shown["status_reason"] == "证书信息有误"
    assert [e["action"] for e in shown["events"]] == ["issue", "revoke"]
    checkpoint = client.get("/api/v1/log/checkpoint").json()
    assert checkpoint["size"] == size_before + 1
    consistency = client.get(
        "/api/v1/log/proof/consistency", params={"old": size_before, "new": checkpoint["size"]}
    ).json()
    assert consistency["hashes"]
    # a revoked license stays revoked
    resp = client.post(
        f"/api/v1/licenses/{identifier}/status",
        json={"action": "resume", "reason": "再试"},
        headers=department,
    )
    assert (resp.status_code, resp.json()["code"]) == (409, "LICENSE_STATE")
    code, out, _ = run(capsys, "--home", str(home), "log", "verify", "--json")
    assert code == 0 and json.loads(out)["consistent"] is True


def test_cli_issue_show_export(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps(COMPANY.example, ensure_ascii=False)
    code, out, err = run(
        capsys, "--home", str(home), "license", "issue", "--type", COMPANY.code,
        "--department", DEMO_DEPARTMENT_CODE, "--holder-name", "示范软件有限公司",
        "--holder-code", "91152502MA0N1A2B3A", "--holder-code-type", "001", "--data", data,
        "--json",
    )  # fmt: skip
    assert code == 0, err
    identifier = json.loads(out)["identifier"]
    code, out, _ = run(capsys, "--home", str(home), "license", "show", identifier, "--json")
    shown = json.loads(out)
    assert shown["holder_code"] == "91152502MA0N1A2B3A"  # a USCC is not personal data
    assert shown["valid_to"] is None  # long-term
    pdf = tmp_path / "license.pdf"
    code, _, err = run(
        capsys, "--home", str(home), "license", "export", identifier, "--format", "pdf",
        "--out", str(pdf),
    )  # fmt: skip
    assert code == 0 and pdf.read_bytes().startswith(b"%PDF"), err
    code, _, err = run(capsys, "--home", str(home), "license", "show", "1.2.156.3005.2.x")
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = run(
        capsys, "--home", str(home), "license", "issue", "--type", COMPANY.code,
        "--department", DEMO_DEPARTMENT_CODE, "--holder-name", "x",
        "--holder-code", "91152502MA0N1A2B3B", "--holder-code-type", "001", "--data", data,
    )  # fmt: skip
    assert code == 1 and "HOLDER_CODE_INVALID" in err


def test_amend_makes_a_new_version_and_supersedes_the_old(
    home: Path, client: TestClient, department: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    first = client.post("/api/v1/licenses", json=issue_body(8), headers=department).json()
    old = first["identifier"]
    size = client.get("/api/v1/log/checkpoint").json()["size"]
    data = {"gender": "女", "birth_date": "1985-11-21", "category": "建筑电工"}
    resp = client.post(
        f"/api/v1/licenses/{old}/versions",
        json={"reason": "增加操作类别", "data": data},
        headers=department,
    )
    assert resp.status_code == 201, resp.text
    amended = resp.json()
    new = amended["identifier"]
    assert amended["previous"] == old and amended["version"] == 2
    assert LicenseId.parse(new) == LicenseId.parse(old).with_version(2)
    assert amended["log"]["checkpoint"]["size"] == size + 1
    shown_old = client.get(f"/api/v1/licenses/{old}", headers=department).json()
    assert shown_old["status"] == "superseded" and new in shown_old["status_reason"]
    lineage = new.rsplit(".", 2)[0]
    newest = client.get(f"/api/v1/licenses/{lineage}", headers=department).json()
    assert (newest["identifier"], newest["data"]["category"]) == (new, "建筑电工")
    path = home / "amended.pdf"
    path.write_bytes(client.get(f"/api/v1/licenses/{new}/document.pdf", headers=department).content)
    code, out, err = run(capsys, "--home", str(home), "verify", str(path))
    assert code == 0, out + err
    again = client.post(
        f"/api/v1/licenses/{old}/versions", json={"reason": "再改"}, headers=department
    )
    assert (again.status_code, again.json()["code"]) == (409, "LICENSE_STATE")
    bad = client.post(
        f"/api/v1/licenses/{new}/versions",
        json={"reason": "错误数据", "data": {"gender": "男"}},
        headers=department,
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "LICENSE_DATA_INVALID")


def test_a_historical_license_past_its_end_reads_expired(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "--home", str(home), "license", "issue", "--type", WORKER.code,
        "--department", DEMO_DEPARTMENT_CODE, "--holder-name", "赵六",
        "--holder-code", person_id(9), "--data", json.dumps(WORKER.example),
        "--valid-from", "2019-01-01", "--json",
    )  # fmt: skip
    assert code == 0, err
    identifier = json.loads(out)["identifier"]
    code, out, _ = run(capsys, "--home", str(home), "license", "show", identifier, "--json")
    shown = json.loads(out)
    assert (shown["valid_to"], shown["status"]) == ("2021-01-01", "expired")


def test_expiry_sweep_and_the_signed_status_list(
    home: Path, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--home", str(home), "license", "expire", "--json")
    assert code == 0, err
    expired = json.loads(out)["expired"]
    assert expired  # the historical license of the test above
    code, out, _ = run(capsys, "--home", str(home), "license", "expire", "--json")
    assert json.loads(out)["expired"] == []  # recorded once
    code, out, _ = run(capsys, "--home", str(home), "license", "show", expired[0], "--json")
    assert [e["action"] for e in json.loads(out)["events"]] == ["issue", "expire"]

    resp = client.get("/api/v1/status-list")
    assert resp.status_code == 200
    rt = open_runtime(load_settings(home))
    try:
        key = _log_public_key(rt)
        listed = read_status_list(resp.content, key)
        assert listed["number"] == license_service(rt).log.size()
    finally:
        rt.close()
    statuses = {e["id"]: e["status"] for e in listed["entries"]}
    assert statuses[expired[0]] == "expired"
    assert {"revoked", "superseded", "expired"} <= set(statuses.values())
    assert "holder" not in resp.text and person_id(7) not in resp.text  # no personal data
    forged = resp.content.replace(b'"revoked"', b'"valid"', 1)
    with pytest.raises(InvalidSignatureError):
        read_status_list(forged, key)
    with pytest.raises(MalformedInputError):
        read_status_list(b"not json", key)


def test_seal_uses_are_logged(
    home: Path, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    size = client.get("/api/v1/log/checkpoint").json()["size"]
    data = home / "minutes.txt"
    data.write_text("会议纪要", encoding="utf-8")
    code, out, _ = run(capsys, "--home", str(home), "seal", "list", "--json")
    seal = json.loads(out)[0]["id"]
    code, _, err = run(
        capsys, "--home", str(home), "sign", str(data), "--seal", seal,
        "--out", str(home / "minutes.p7s"),
    )  # fmt: skip
    assert code == 0, err
    checkpoint = client.get("/api/v1/log/checkpoint").json()
    assert checkpoint["size"] == size + 1
    entry = client.get(
        "/api/v1/log/proof/inclusion", params={"index": size, "size": checkpoint["size"]}
    ).json()["entry"]
    record = json.loads(entry)
    assert (record["action"], record["seal"], record["format"]) == ("seal.use", seal, "cms")
    assert record["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_concurrent_status_changes_one_wins(
    home: Path, client: TestClient, department: dict[str, str]
) -> None:
    """Revoke and suspend at the same moment, with a signer as slow as an HSM: exactly one
    change happens, and the log agrees with the registry."""
    from etrust.licenses import department_signer, license_lifecycle

    identifier = client.post("/api/v1/licenses", json=issue_body(10), headers=department).json()[
        "identifier"
    ]
    rt = open_runtime(load_settings(home))
    try:
        signer = department_signer(rt, DEMO_DEPARTMENT_CODE)

        class Slow:
            seal_id, qr_algorithm, qr_key_id = signer.seal_id, signer.qr_algorithm, signer.qr_key_id
            seal_ofd, seal_pdf, sign_qr = signer.seal_ofd, signer.seal_pdf, signer.sign_qr

            def sign(self, data: bytes) -> bytes:
                time.sleep(0.3)
                return signer.sign(data)

        lifecycle = license_lifecycle(rt)
        outcomes: dict[str, str] = {}

        def change(action: str) -> None:
            try:
                outcomes[action] = lifecycle.change(
                    identifier, action, "并发", Slow(), "t"
                ).license.status
            except EtrustError as exc:
                outcomes[action] = exc.code

        threads = [threading.Thread(target=change, args=(a,)) for a in ("revoke", "suspend")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [v for v in outcomes.values() if v in ("revoked", "suspended")]
        assert len(won) == 1 and "LICENSE_STATE" in outcomes.values(), outcomes
        assert status_problems(rt.sessions) == []
    finally:
        rt.close()


def test_the_license_code(home: Path, client: TestClient, department: dict[str, str]) -> None:
    """Compact, signed by the department's QR key, the name as the type's policy says, the
    holder's code only as a salted slow hash that the right ID number matches; an SM2 code
    fits a QR code of version 15 at level M."""
    issued = client.post("/api/v1/licenses", json=issue_body(11), headers=department).json()
    text = issued["qr_text"]
    assert text.startswith("http") and "/v#" in text
    signed = license_qr.decode(license_qr.from_text(text))
    code = signed.code
    assert code.holder_name == "李*"  # the person type masks names in its code
    assert code.holder_matches(person_id(11)) and not code.holder_matches(person_id(12))
    assert person_id(11) not in text
    parsed = LicenseId.parse(issued["identifier"])
    assert (code.type_code, code.issuer_code, code.serial, code.version) == (
        parsed.type_code,
        parsed.issuer_code,
        parsed.serial,
        parsed.version,
    )
    assert qr_symbol(text, level="M").version <= 15
    rt = open_runtime(load_settings(home))
    try:
        from etrust.qr_keys import department_qr_key

        qr_key = department_qr_key(rt, DEMO_DEPARTMENT_CODE)
        assert code.key_id == qr_key.key_id and code.algorithm == "sm2-sm3"
        SM2_SM3.verify(qr_key.key.public_key_info, signed.signature, signed.signed)
        with pytest.raises(InvalidSignatureError):
            SM2_SM3.verify(qr_key.key.public_key_info, signed.signature, signed.signed + b"x")
    finally:
        rt.close()


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", "/api/v1/licenses/a%00b", None),
        ("get", "/api/v1/license-types/a%00b", None),
        ("post", "/api/v1/licenses/a%00b/status", {"action": "revoke", "reason": "x"}),
        ("post", "/api/v1/licenses", {"type_code": "1\u0000"}),
        ("post", "/api/v1/licenses", {"valid_from": "9999-12-31"}),
        ("post", "/api/v1/licenses", {"valid_from": "0001-01-01"}),
    ],
)
def test_odd_input_is_refused_never_a_500(
    client: TestClient,
    department: dict[str, str],
    method: str,
    url: str,
    body: dict[str, Any] | None,
) -> None:
    if body is not None and "type_code" not in body:
        body = issue_body(12, **body)
    elif body is not None:
        body = issue_body(12, type_code="1\x00")
    resp = client.request(method, url, json=body, headers=department)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["code"], resp.text


def test_status_changes_outlive_the_issuing_seal(
    home: Path, client: TestClient, department: dict[str, str]
) -> None:
    """A license sealed with a seal whose key was since suspended (or compromised) can still
    be revoked, with another of the department's seals."""
    issued = client.post("/api/v1/licenses", json=issue_body(13), headers=department).json()
    rt = open_runtime(load_settings(home))
    try:
        from etrust.seals import SealStore

        seal = next(s for s in SealStore(rt.sessions).list(DEMO_DEPARTMENT_CODE) if s.alg == "sm2")
        rt.lifecycle.transition(seal.key_name, "suspended", "test", "key under investigation")
        try:
            resp = client.post(
                f"/api/v1/licenses/{issued['identifier']}/status",
                json={"action": "revoke", "reason": "印章密钥可疑"},
                headers=department,
            )
            assert resp.status_code == 200 and resp.json()["status"] == "revoked", resp.text
            events = client.get(
                f"/api/v1/licenses/{issued['identifier']}", headers=department
            ).json()["events"]
            assert events[-1]["record"]["seal"] != seal.es_id  # the RSA seal signed it
        finally:
            rt.lifecycle.transition(seal.key_name, "active", "test", "cleared")
    finally:
        rt.close()


def test_the_public_log_links_no_person(
    home: Path, client: TestClient, department: dict[str, str]
) -> None:
    """Two licenses of one holder: their log records share nothing that identifies the
    holder, and the fields are committed under a key, not hashed in the open."""
    a = client.post("/api/v1/licenses", json=issue_body(14), headers=department).json()
    b = client.post(
        "/api/v1/licenses", json=issue_body(14, holder_name="李四"), headers=department
    ).json()
    records = []
    for issued in (a, b):
        size = issued["log"]["checkpoint"]["size"]
        entry = client.get(
            "/api/v1/log/proof/inclusion", params={"index": issued["log"]["index"], "size": size}
        ).json()["entry"]
        records.append(json.loads(entry))
    assert records[0]["holder"] != records[1]["holder"]
    assert records[0]["data"] != hashlib.sha256(b"x").hexdigest()
    assert "data_sha256" not in records[0]
    assert person_id(14) not in json.dumps(records)


def test_log_verify_catches_an_edited_status(
    home: Path, client: TestClient, department: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    identifier = client.post("/api/v1/licenses", json=issue_body(15), headers=department).json()[
        "identifier"
    ]
    client.post(
        f"/api/v1/licenses/{identifier}/status",
        json={"action": "revoke", "reason": "测试"},
        headers=department,
    )
    rt = open_runtime(load_settings(home))
    try:
        with transaction(rt.sessions) as session:
            row = session.scalar(select(LicenseRow).where(LicenseRow.identifier == identifier))
            assert row is not None
            row.status = "valid"  # quietly un-revoked
        code, out, _ = run(capsys, "--home", str(home), "log", "verify", "--json")
        assert code == 1
        assert any(
            identifier in p and "revoked in the log" in p for p in json.loads(out)["problems"]
        )
        with transaction(rt.sessions) as session:
            row = session.scalar(select(LicenseRow).where(LicenseRow.identifier == identifier))
            assert row is not None
            row.status = "revoked"
    finally:
        rt.close()


def test_log_verify_finds_a_rewritten_entry(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: it damages the log."""
    rt = open_runtime(load_settings(home))
    try:
        with transaction(rt.sessions) as session:
            row = session.get(LogEntryRow, 0)
            assert row is not None
            row.entry = row.entry.replace(b'"issue"', b'"amend"')
    finally:
        rt.close()
    code, out, _ = run(capsys, "--home", str(home), "log", "verify", "--json")
    assert code == 1
    assert any("rewritten" in p or "match" in p for p in json.loads(out)["problems"])
