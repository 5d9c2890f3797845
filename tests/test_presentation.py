"""Presentation codes (出示码) end to end, on SQLite and PostgreSQL: a holder makes a code of
their license over the API, a window verifies it once; a second scan, an expired code, a forged
one, another holder's license, a revoked or amended license and two windows racing are each
refused with their own reason."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from etrust.api_presentation import presentation_service
from etrust.app import create_app
from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE, DEMO_HOLDERS, demo_license_types
from etrust.licenses import holder_key, holder_links, license_service
from etrust.runtime import Runtime
from etrust.settings import load_settings
from etrust.verification import decode_image
from license_store.holder_codes import resident_id_check
from storage.engine import transaction
from tests.db_fixtures import BACKENDS, demo_home
from tests.officers import api_headers
from trust.clock import fixed_clock
from trust.errors import MalformedInputError
from verify_app.code_check import CodeCheck
from verify_app.models import PresentationRow
from verify_app.presentation import (
    MAX_MINUTES,
    PRESENTATION_MARK,
    PresentationService,
    check_presentation,
    is_presentation,
    needs_network,
    presentation_key,
)

pytest_plugins = ["tests.db_fixtures"]

WORKER, COMPANY = demo_license_types()
WINDOW = "api:window-1"


def person_id(seed: int) -> str:
    body = f"15250219{80 + seed % 20:02d}0{1 + seed % 9}{10 + seed % 18:02d}{seed % 1000:03d}"
    return body + resident_id_check(body)


@pytest.fixture(scope="module", params=BACKENDS)
def home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    yield from demo_home(request, tmp_path_factory.mktemp(f"presentation-{request.param}"))


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home))) as c:
        yield c


@pytest.fixture(scope="module")
def rt(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.services.runtime  # type: ignore[attr-defined]
    return runtime


@pytest.fixture(scope="module")
def issuer(home: Path) -> dict[str, str]:
    return api_headers(home, "issuer", "department", DEMO_DEPARTMENT_CODE)


def issue(client: TestClient, issuer: dict[str, str], seed: int) -> str:
    body = {
        "type_code": WORKER.code,
        "holder_name": "赵六",
        "holder_code": person_id(seed),
        "data": WORKER.example,
    }
    resp = client.post("/api/v1/licenses", json=body, headers=issuer)
    assert resp.status_code == 201, resp.text
    identifier: str = resp.json()["identifier"]
    return identifier


def holder(rt: Runtime, code: str, code_type: str = "111") -> dict[str, str]:
    return {"X-Holder-Token": holder_links(rt).mint(code, code_type, 30, "read")}


def present(client: TestClient, headers: dict[str, str], identifier: str, **extra: Any) -> Any:
    return client.post(
        "/api/v1/holder/presentations", json={"identifier": identifier, **extra}, headers=headers
    )


def made(client: TestClient, headers: dict[str, str], identifier: str, **extra: Any) -> str:
    resp = present(client, headers, identifier, **extra)
    assert resp.status_code == 201, resp.text
    code: str = resp.json()["code"]
    return code


def refused(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["code"]


def verify(
    rt: Runtime, code: str, holder_code: str | None = None, now: datetime | None = None
) -> CodeCheck:
    return check_presentation(
        presentation_service(rt), code, holder_code, WINDOW, now or datetime.now(UTC)
    )


def row_of(rt: Runtime, code: str) -> PresentationRow:
    presentation_id = code.split("#", 1)[1].split(".")[1]
    with transaction(rt.sessions) as session:
        row = session.get(PresentationRow, presentation_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_code_verifies_once(rt: Runtime, client: TestClient, issuer: dict[str, str]) -> None:
    identifier = issue(client, issuer, 1)
    before = datetime.now(UTC)
    resp = present(client, holder(rt, person_id(1)), identifier)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    answer = resp.json()
    code = answer["code"]
    base = rt.settings.base_url.rstrip("/")
    assert code.startswith(f"{base}/v#{PRESENTATION_MARK}") and is_presentation(code)
    assert identifier not in code and person_id(1) not in code  # no personal data in it
    expires_at = datetime.fromisoformat(answer["expires_at"])
    assert before + timedelta(minutes=3) <= expires_at <= datetime.now(UTC) + timedelta(minutes=3)
    png = base64.b64decode(answer["qr_png_base64"])
    assert decode_image(png) == [code]  # the QR code holds the text

    first = verify(rt, code, person_id(1))
    assert (first.verdict, first.reason, first.message_zh) == ("valid", "OK", "证照有效")
    assert first.license["identifier"] == identifier
    assert first.license["holder_name"] == "赵*"  # the type's QR codes mask the name
    assert first.license["issuer_code"] and first.license["valid_to"]
    assert first.holder_match is True
    assert first.status is not None and first.status.source == "online"
    assert first.to_dict()["status"]["status"] == "valid"
    row = row_of(rt, code)
    assert row.used_by == WINDOW and row.used_at is not None

    again = verify(rt, code, person_id(1))
    assert (again.verdict, again.reason) == ("invalid", "PRESENTATION_REPLAYED")
    assert again.message_zh == "出示码已被使用过，请持证人重新生成"
    assert again.license == {} and again.holder_match is None  # a replay learns nothing
    assert row_of(rt, code).used_by == WINDOW  # the first verifier stays on record

    # the bare fragment (typed, or from a scanner that drops the URL) is the same code
    other = made(client, holder(rt, person_id(1)), identifier)
    mismatch = verify(rt, other.split("#", 1)[1], person_id(2))
    assert (mismatch.reason, mismatch.holder_match) == ("OK", False)


def test_an_expired_code_is_refused_and_not_spent(
    rt: Runtime, client: TestClient, issuer: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 3)
    code = made(client, holder(rt, person_id(3)), identifier, minutes=1)
    expires_at = row_of(rt, code).expires_at
    for late in (expires_at, expires_at + timedelta(minutes=1)):
        result = verify(rt, code, now=late)
        assert (result.verdict, result.reason) == ("invalid", "PRESENTATION_EXPIRED")
        assert result.message_zh == "出示码已过期，请持证人重新生成" and result.license == {}
    assert row_of(rt, code).used_at is None

    # made under a clock: ten minutes at most, checked with the service's own clock
    now = datetime.now(UTC)
    service = PresentationService(
        rt.sessions,
        presentation_key(holder_key(rt)),
        license_service(rt).holder_hash,
        fixed_clock(now - timedelta(minutes=MAX_MINUTES, seconds=1)),
    )
    holder_hash = license_service(rt).holder_hash(person_id(3))
    old = service.create(holder_hash, identifier, MAX_MINUTES)
    assert verify(rt, old.fragment).reason == "PRESENTATION_EXPIRED"  # by the wall clock
    assert service.verify(old.fragment, WINDOW).reason == "OK"  # in time by its own clock
    for minutes in (0, MAX_MINUTES + 1, True):
        with pytest.raises(MalformedInputError):
            service.create(holder_hash, identifier, minutes)
    for wrong in (0, MAX_MINUTES + 1, "5", 2.5):
        resp = present(client, holder(rt, person_id(3)), identifier, minutes=wrong)
        assert refused(resp) == (422, "REQUEST_INVALID")


def test_a_forged_code_is_refused_without_the_database(
    rt: Runtime, client: TestClient, issuer: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 4)
    code = made(client, holder(rt, person_id(4)), identifier)
    url, fragment = code.split("#", 1)
    mark, presentation_id, mac = fragment.split(".")

    class NoDatabase:
        def __call__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the database was asked")

        begin = __call__

    offline = PresentationService(
        cast(sessionmaker[Session], NoDatabase()),
        presentation_key(holder_key(rt)),
        license_service(rt).holder_hash,
    )
    elsewhere = PresentationService(
        cast(sessionmaker[Session], NoDatabase()),
        presentation_key(secrets.token_bytes(32)),  # another registry's holder key
        license_service(rt).holder_hash,
    )
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    other_id = secrets.token_urlsafe(16)
    forged = [
        f"{url}#{mark}.{presentation_id}.{flipped}",
        f"{url}#{mark}.{other_id}.{mac}",
        f"{mark}.{presentation_id[::-1]}.{mac}",
    ]
    for text_ in forged:
        result = offline.verify(text_, WINDOW)
        assert (result.verdict, result.reason) == ("invalid", "PRESENTATION_FORGED"), text_
    assert elsewhere.verify(code, WINDOW).reason == "PRESENTATION_FORGED"
    malformed = [
        "P.",
        f"{url}#P.{presentation_id}",
        f"{url}#P.{presentation_id}.{mac}.x",
        f"{url}#P.{presentation_id}.{mac[:-1]}",
        f"{url}#P.{presentation_id}=.{mac}",
        f"{url}#P.{presentation_id[:-1]}é.{mac}",
        f"{url}#Q.{presentation_id}.{mac}",
        f"{url}#P.{presentation_id}.{mac}" + " " * 3000,
    ]
    for text_ in malformed:
        result = offline.verify(text_, WINDOW)
        assert (result.verdict, result.reason) == ("invalid", "NOT_A_LICENSE_CODE"), text_
    assert row_of(rt, code).used_at is None  # none of it spent the real code
    assert verify(rt, f"  {code}\n").reason == "OK"  # as a scanner types it, with Enter

    # a code whose MAC is good but whose row is gone (purged, or another database)
    gone = made(client, holder(rt, person_id(4)), identifier)
    with transaction(rt.sessions) as session:
        session.execute(delete(PresentationRow).where(PresentationRow.id == row_of(rt, gone).id))
    assert verify(rt, gone).reason == "UNKNOWN_PRESENTATION"


def test_only_codes_are_routed_here_and_offline_they_need_the_network(
    rt: Runtime, client: TestClient, issuer: dict[str, str]
) -> None:
    resp = client.post(
        "/api/v1/licenses",
        json={
            "type_code": WORKER.code,
            "holder_name": "赵六",
            "holder_code": person_id(5),
            "data": WORKER.example,
        },
        headers=issuer,
    )
    assert resp.status_code == 201, resp.text
    license_code: str = resp.json()["qr_text"]
    base = rt.settings.base_url.rstrip("/")
    assert is_presentation(f"{base}/v#P.x.y") and is_presentation(" P.x.y")
    for other in (license_code, "", "TAEB", f"{base}/v?P.x.y", "https://example.com/P.x"):
        assert not is_presentation(other), other
    assert verify(rt, license_code).reason == "NOT_A_LICENSE_CODE"
    now = datetime.now(UTC)
    offline = needs_network(now)
    assert (offline.verdict, offline.reason, offline.message_zh) == (
        "unknown",
        "PRESENTATION_NEEDS_NETWORK",
        "出示码需联网核验",
    )
    assert offline.verdict_zh == "无法确认"


def test_only_the_holder_shows_a_license(
    rt: Runtime, client: TestClient, issuer: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 6)
    stranger = holder(rt, person_id(7))
    theirs = present(client, stranger, identifier)
    missing = present(client, stranger, identifier[:-3] + "9.X")
    assert refused(theirs) == refused(missing) == (404, "NOT_FOUND")
    assert theirs.json()["title"] == missing.json()["title"]
    assert refused(present(client, {}, identifier)) == (401, "HOLDER_TOKEN_INVALID")
    assert refused(present(client, {"X-Holder-Token": "x" * 40}, identifier)) == (
        401,
        "HOLDER_TOKEN_INVALID",
    )


def test_full_name_when_the_type_says_so(rt: Runtime, client: TestClient) -> None:
    name, code, code_type = DEMO_HOLDERS[COMPANY.code]
    headers = holder(rt, code, code_type)
    (company,) = client.get("/api/v1/holder/licenses", headers=headers).json()
    lineage = ".".join(company["identifier"].split(".")[:-2])
    result = verify(rt, made(client, headers, lineage), code.lower())  # case does not matter
    assert (result.reason, result.holder_match) == ("OK", True)
    assert result.license["identifier"] == company["identifier"]  # the newest version
    assert result.license["holder_name"] == name and result.license["type_name"] == COMPANY.name


def test_revoked_and_amended_licenses(
    rt: Runtime, client: TestClient, issuer: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 8)
    headers = holder(rt, person_id(8))
    before = made(client, headers, identifier)
    revoke = {"action": "revoke", "reason": "吊销"}
    changed = client.post(f"/api/v1/licenses/{identifier}/status", json=revoke, headers=issuer)
    assert changed.is_success, changed.text
    result = verify(rt, before)
    assert (result.verdict, result.reason) == ("invalid", "REVOKED")
    assert result.license["identifier"] == identifier  # the window sees which license
    assert result.status is not None and result.status.status == "revoked"
    assert refused(present(client, headers, identifier)) == (409, "LICENSE_NOT_PRESENTABLE")

    first = issue(client, issuer, 9)
    headers = holder(rt, person_id(9))
    shown = made(client, headers, first)
    amended = client.post(
        f"/api/v1/licenses/{first}/versions",
        json={"reason": "更正", "data": {**WORKER.example, "category": "建筑焊工"}},
        headers=issuer,
    )
    assert amended.status_code == 201, amended.text
    assert verify(rt, shown).reason == "SUPERSEDED"  # shown for the version it was made of
    assert refused(present(client, headers, first)) == (409, "LICENSE_NOT_PRESENTABLE")
    lineage = ".".join(first.split(".")[:-2])
    newest = verify(rt, made(client, headers, lineage))
    assert (newest.reason, newest.license["identifier"]) == ("OK", amended.json()["identifier"])


def test_two_windows_at_once_get_one_answer(
    rt: Runtime, client: TestClient, issuer: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 10)
    code = made(client, holder(rt, person_id(10)), identifier)
    windows = 4
    start = threading.Barrier(windows)
    answers: list[str] = []

    def scan(window: int) -> None:
        start.wait()
        result = check_presentation(
            presentation_service(rt), code, None, f"api:window-{window}", datetime.now(UTC)
        )
        answers.append(result.reason)

    threads = [threading.Thread(target=scan, args=(w,)) for w in range(windows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == ["OK"] + ["PRESENTATION_REPLAYED"] * (windows - 1)
    assert row_of(rt, code).used_by is not None


def test_the_verify_endpoint_routes_presentation_codes(
    rt: Runtime, client: TestClient, issuer: dict[str, str]
) -> None:
    """Through POST /api/v1/verify: once valid (online), then replayed; offline checkers say
    the code needs the network."""
    from etrust.verification import checker
    from trust.clock import system_clock

    identifier = issue(client, issuer, 31)
    code = made(client, holder(rt, person_id(31)), identifier)
    # a phone that opens the code (no clerk signed in) does not spend it
    phone = client.post("/api/v1/verify", json={"code": code}).json()
    assert (phone["verdict"], phone["reason"]) == ("unknown", "PRESENTATION_AT_WINDOW")
    desk = api_headers(home_of(rt), "presentation-desk", "service-desk", DEMO_DEPARTMENT_CODE)
    first = client.post(
        "/api/v1/verify", json={"code": code, "holder_code": person_id(31)}, headers=desk
    )
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["kind"], answer["verdict"], answer["reason"]) == ("presentation", "valid", "OK")
    assert answer["holder_match"] is True and answer["license"]["identifier"] == identifier
    again = client.post("/api/v1/verify", json={"code": code}, headers=desk).json()
    assert (again["verdict"], again["reason"]) == ("invalid", "PRESENTATION_REPLAYED")
    offline = checker(rt).check(
        made(client, holder(rt, person_id(31)), identifier), now=system_clock()
    )
    assert (offline.verdict, offline.reason) == ("unknown", "PRESENTATION_NEEDS_NETWORK")


def test_the_command_line_spends_a_code_online(
    home: Path,
    rt: Runtime,
    client: TestClient,
    issuer: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    identifier = issue(client, issuer, 32)
    code = made(client, holder(rt, person_id(32)), identifier)
    capsys.readouterr()
    assert main(["--home", str(home), "verify", "--code", code, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "OK"
    assert main(["--home", str(home), "verify", "--code", code, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "PRESENTATION_REPLAYED"


def home_of(rt: Runtime) -> Path:
    return rt.settings.home


def test_old_checks_and_spent_codes_are_purged(
    home: Path, rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select

    from storage.engine import transaction
    from verify_app.models import PresentationRow, VerificationCheckRow
    from verify_app.retention import purge

    old = datetime.now(UTC) - timedelta(days=5000)
    with transaction(rt.sessions) as session:
        session.add(
            VerificationCheckRow(
                at=old, actor="public", channel="api", kind="code", identifier=None,
                verdict="invalid", reason="NOT_A_LICENSE_CODE",
            )
        )  # fmt: skip
        session.add(
            PresentationRow(
                id="old-code", identifier="x", holder_hash="0" * 64, created_at=old,
                expires_at=old + timedelta(minutes=3), used_at=None, used_by=None,
            )
        )  # fmt: skip
    checks, presentations = purge(rt.sessions, datetime.now(UTC))
    assert checks >= 1 and presentations >= 1
    with transaction(rt.sessions) as session:
        assert session.get(PresentationRow, "old-code") is None
        assert (
            session.scalar(
                select(func.count())
                .select_from(VerificationCheckRow)
                .where(VerificationCheckRow.at < old + timedelta(days=1))
            )
            == 0
        )
    capsys.readouterr()
    assert main(["--home", str(home), "checks", "purge", "--json"]) == 0
    assert main(["--home", str(home), "checks", "purge", "--checks-days", "3"]) == 1
