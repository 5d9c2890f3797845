"""Holder consent end to end, on SQLite and on PostgreSQL: a department issues a license, the
holder sees and downloads it through a signed link, lets a second department read chosen
fields, and sees every read and every link minted for them; and what a department, a service
desk, a stranger or a forged link cannot do."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE, demo_license_types
from etrust.licenses import holder_links, license_service
from etrust.runtime import open_runtime
from etrust.settings import load_settings
from license_store.consent import (
    ConsentService,
    GrantReadRequiredError,
    GrantUsedUpError,
)
from license_store.holder_access import (
    HolderAuthError,
    HolderScopeError,
    SignedHolderLinks,
    link_secret,
)
from license_store.holder_codes import mask_holder_code, resident_id_check, uscc_check
from tests.cli_run import run
from tests.db_fixtures import BACKENDS, demo_home
from tests.officers import api_headers
from trust.clock import Clock, fixed_clock
from trust.errors import MalformedInputError

pytest_plugins = ["tests.db_fixtures"]

WORKER = demo_license_types()[0]
HR, HR_NAME = "152500-rsj", "示范盟人力资源和社会保障局"
TAX, TAX_NAME = "152500-sw", "示范盟税务局"


def person_id(seed: int) -> str:
    body = f"15250119{80 + seed % 20:02d}0{1 + seed % 9}{10 + seed % 18:02d}{seed % 1000:03d}"
    return body + resident_id_check(body)


def uscc(body17: str) -> str:
    return body17 + uscc_check(body17)


@pytest.fixture(scope="module", params=BACKENDS)
def home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A demo home with two more departments (grantees), on each database."""
    for path in demo_home(request, tmp_path_factory.mktemp(f"consent-{request.param}")):
        rt = open_runtime(load_settings(path))
        try:
            registry = license_service(rt).registry
            registry.add_department(HR, HR_NAME, uscc("12152500MB0000002"), "152500")
            registry.add_department(TAX, TAX_NAME, uscc("12152500MB0000003"), "152500")
        finally:
            rt.close()
        yield path


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(home))) as c:
        yield c


@pytest.fixture(scope="module")
def issuer(home: Path) -> dict[str, str]:
    return api_headers(home, "issuer", "department", DEMO_DEPARTMENT_CODE)


@pytest.fixture(scope="module")
def hr(home: Path) -> dict[str, str]:
    return api_headers(home, "hr-client", "department", HR)


@pytest.fixture(scope="module")
def tax(home: Path) -> dict[str, str]:
    return api_headers(home, "tax-client", "department", TAX)


@pytest.fixture(scope="module")
def desk(home: Path) -> dict[str, str]:
    return api_headers(home, "service-desk", "service-desk")


def consenting(home: Path, holder_code: str) -> str:
    """A consent-scope token, as only the operator's CLI mints them for now."""
    out = StringIO()
    with redirect_stdout(out):
        args = ["--home", str(home), "holder", "link", "--holder-code", holder_code]
        assert main([*args, "--scope", "consent", "--json"]) == 0
    link = json.loads(out.getvalue())
    assert link["scope"] == "consent"
    token: str = link["token"]
    return token


def reads(receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The receipts of reads and downloads (not of links minted)."""
    return [r for r in receipts if r["kind"] != "link"]


def issue(client: TestClient, issuer: dict[str, str], seed: int) -> str:
    body = {
        "type_code": WORKER.code,
        "holder_name": "李四",
        "holder_code": person_id(seed),
        "data": {"gender": "女", "birth_date": "1985-11-21", "category": "建筑焊工"},
    }
    resp = client.post("/api/v1/licenses", json=body, headers=issuer)
    assert resp.status_code == 201, resp.text
    identifier: str = resp.json()["identifier"]
    return identifier


def mint(client: TestClient, desk: dict[str, str], holder_code: str) -> str:
    resp = client.post("/api/v1/holder-links", json={"holder_code": holder_code}, headers=desk)
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["token"]
    return token


def as_holder(token: str) -> dict[str, str]:
    return {"X-Holder-Token": token}


def grant(client: TestClient, token: str, **changes: Any) -> Any:
    body = {
        "department": HR,
        "fields": ["category", "holder_name"],
        "purpose": "申请职业技能补贴",
        "days": 7,
        **changes,
    }
    # JSON with \u escapes, as a browser may send (a lone surrogate cannot be UTF-8)
    return client.post(
        "/api/v1/holder/grants",
        content=json.dumps(body),
        headers={**as_holder(token), "Content-Type": "application/json"},
    )


def refused(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["code"]


def test_holder_lists_and_downloads_own_licenses(
    client: TestClient, issuer: dict[str, str], desk: dict[str, str]
) -> None:
    mine = issue(client, issuer, 1)
    theirs = issue(client, issuer, 2)
    token = mint(client, desk, person_id(1))

    listed = client.get("/api/v1/holder/licenses", headers=as_holder(token))
    assert listed.status_code == 200, listed.text
    assert listed.headers["Cache-Control"] == "no-store"
    (own,) = listed.json()
    assert own["identifier"] == mine
    assert (own["holder_code"], own["holder_name"], own["status"]) == (
        person_id(1),
        "李四",
        "valid",
    )
    # a link opened from an SMS carries the token in the query
    by_query = client.get("/api/v1/holder/licenses", params={"token": token})
    assert [lic["identifier"] for lic in by_query.json()] == [mine]

    for fmt, magic in (("ofd", b"PK"), ("pdf", b"%PDF")):
        got = client.get(own["links"][fmt], headers=as_holder(token))
        assert got.status_code == 200 and got.content.startswith(magic)
        original = client.get(f"/api/v1/licenses/{mine}/document.{fmt}", headers=issuer)
        assert got.content == original.content  # the very bytes the issuer sealed
    # another holder's license is as absent as one that does not exist
    other = client.get(f"/api/v1/holder/licenses/{theirs}/document.pdf", headers=as_holder(token))
    missing = client.get(
        "/api/v1/holder/licenses/1.2.156.3005.2.nope/document.pdf", headers=as_holder(token)
    )
    assert refused(other) == refused(missing) == (404, "NOT_FOUND")


def test_a_department_reads_only_through_a_grant(
    home: Path,
    client: TestClient,
    issuer: dict[str, str],
    desk: dict[str, str],
    hr: dict[str, str],
    tax: dict[str, str],
) -> None:
    identifier = issue(client, issuer, 3)
    token = consenting(home, person_id(3))
    assert client.get(f"/api/v1/licenses/{identifier}", headers=hr).status_code == 404
    assert refused(client.get("/api/v1/grants/no-such-grant/licenses", headers=hr)) == (
        404,
        "GRANT_NOT_FOUND",
    )

    lineage = ".".join(identifier.split(".")[:-2])  # every version of the license
    made = grant(client, token, licenses=[lineage])
    assert made.status_code == 201, made.text
    created = made.json()
    assert created["state"] == "active" and created["grantee_name"] == HR_NAME
    assert created["licenses"] == [lineage] and created["uses_left"] is None

    read = client.get(created["url"], headers=hr)
    assert read.status_code == 200, read.text
    (shared,) = read.json()["licenses"]
    assert shared["identifier"] == identifier and shared["status"] == "valid"
    assert shared["holder_name"] == "李四"  # granted
    assert shared["holder_code"] == mask_holder_code(person_id(3), "111")  # not granted
    assert shared["data"] == {"category": "建筑焊工"}  # only what was granted
    assert "links" not in shared and "documents" not in shared
    assert shared["valid_to"] and shared["type_name"] == WORKER.name

    receipts = reads(client.get("/api/v1/holder/receipts", headers=as_holder(token)).json())
    assert len(receipts) == 1
    receipt = receipts[0]
    assert receipt["kind"] == "read"
    assert (receipt["license"], receipt["grantee"], receipt["accessor"]) == (
        identifier,
        HR,
        "api:hr-client",
    )
    assert receipt["purpose"] == "申请职业技能补贴"
    assert receipt["fields"] == ["category", "holder_name"]

    # Another department, even the issuer, gets what an unknown grant gets.
    unknown = client.get(f"/api/v1/grants/{secrets.token_urlsafe(16)}/licenses", headers=tax)
    for headers in (tax, issuer):
        other = client.get(created["url"], headers=headers)
        assert refused(other) == refused(unknown) == (404, "GRANT_NOT_FOUND")
        assert other.json()["title"] == unknown.json()["title"]
    # a client that is no department reads no grant
    assert refused(client.get(created["url"], headers=desk)) == (403, "FORBIDDEN")
    receipts = client.get("/api/v1/holder/receipts", headers=as_holder(token)).json()
    assert len(reads(receipts)) == 1


def test_documents_through_a_grant(
    home: Path, client: TestClient, issuer: dict[str, str], hr: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 4)
    token = consenting(home, person_id(4))
    created = grant(client, token, licenses=[identifier], fields=["documents"], max_uses=1).json()
    early = client.get(
        f"/api/v1/grants/{created['id']}/licenses/{identifier}/document.pdf", headers=hr
    )
    assert refused(early) == (403, "GRANT_READ_REQUIRED")  # read the grant first

    (shared,) = client.get(created["url"], headers=hr).json()["licenses"]
    assert shared["data"] == {} and shared["holder_name"] == "李*"
    for fmt in ("ofd", "pdf"):
        got = client.get(shared["links"][fmt], headers=hr)
        assert got.status_code == 200, got.text
        original = client.get(f"/api/v1/licenses/{identifier}/document.{fmt}", headers=issuer)
        assert got.content == original.content
    receipts = reads(client.get("/api/v1/holder/receipts", headers=as_holder(token)).json())
    assert [(r["kind"], r["fields"]) for r in receipts] == [
        ("download", ["documents:pdf"]),
        ("download", ["documents:ofd"]),
        ("read", ["documents"]),
    ]
    # the one use is spent: its read opened one download of each format, no more
    again = client.get(shared["links"]["pdf"], headers=hr)
    assert refused(again) == (403, "GRANT_USED_UP")

    # a grant without documents does not open them
    plain = grant(client, token, licenses=[identifier], fields=["category"]).json()
    client.get(plain["url"], headers=hr)
    resp = client.get(
        f"/api/v1/grants/{plain['id']}/licenses/{identifier}/document.pdf", headers=hr
    )
    assert refused(resp) == (403, "GRANT_SCOPE")


def test_a_grant_follows_amendments_and_shows_revocation(
    home: Path,
    client: TestClient,
    issuer: dict[str, str],
    hr: dict[str, str],
) -> None:
    first = issue(client, issuer, 14)
    token = consenting(home, person_id(14))
    created = grant(client, token, licenses=[first], fields=["category"]).json()
    amended = client.post(
        f"/api/v1/licenses/{first}/versions",
        json={
            "reason": "操作类别变更",
            "data": {"gender": "女", "birth_date": "1985-11-21", "category": "建筑电工"},
        },
        headers=issuer,
    )
    assert amended.status_code == 201, amended.text
    second = amended.json()["identifier"]
    (shared,) = client.get(created["url"], headers=hr).json()["licenses"]
    assert (shared["identifier"], shared["version"]) == (second, 2)
    assert shared["data"] == {"category": "建筑电工"}
    (own,) = client.get("/api/v1/holder/licenses", headers=as_holder(token)).json()
    assert own["identifier"] == second  # the holder sees the current version

    revoke = {"action": "revoke", "reason": "吊销"}
    assert client.post(f"/api/v1/licenses/{second}/status", json=revoke, headers=issuer).is_success
    (shared,) = client.get(created["url"], headers=hr).json()["licenses"]
    assert shared["status"] == "revoked"  # the department sees it is no longer good


def test_a_one_use_grant_read_twice_at_once_answers_once(
    home: Path, client: TestClient, issuer: dict[str, str], hr: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 5)
    token = consenting(home, person_id(5))
    created = grant(client, token, licenses=[identifier], max_uses=1).json()
    answers: list[tuple[int, str | None]] = []
    start = threading.Barrier(4)

    def read() -> None:
        start.wait()
        resp = client.get(created["url"], headers=hr)
        answers.append((resp.status_code, resp.json().get("code")))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers, key=str) == [(200, None)] + [(403, "GRANT_USED_UP")] * 3
    receipts = reads(client.get("/api/v1/holder/receipts", headers=as_holder(token)).json())
    assert [r["grant_id"] for r in receipts] == [created["id"]]
    (listed,) = client.get("/api/v1/holder/grants", headers=as_holder(token)).json()
    assert (listed["uses_left"], listed["state"]) == (0, "used_up")


def test_revoked_and_expired_grants_are_refused(
    home: Path,
    client: TestClient,
    issuer: dict[str, str],
    desk: dict[str, str],
    hr: dict[str, str],
) -> None:
    identifier = issue(client, issuer, 6)
    token = consenting(home, person_id(6))
    created = grant(client, token, licenses=[identifier]).json()
    stranger = consenting(home, person_id(7))
    url = f"/api/v1/holder/grants/{created['id']}"
    assert refused(client.delete(url, headers=as_holder(stranger))) == (404, "GRANT_NOT_FOUND")
    revoked = client.delete(url, headers=as_holder(token))
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert refused(client.delete(url, headers=as_holder(token))) == (409, "GRANT_ALREADY_REVOKED")
    assert refused(client.get(created["url"], headers=hr)) == (403, "GRANT_REVOKED")

    # A grant made two days ago for one day (the service under a clock set back).
    now = datetime.now(UTC)
    rt = open_runtime(load_settings(home))
    try:
        holder_hash = license_service(rt).holder_hash(person_id(6))
        old = ConsentService(rt.sessions, fixed_clock(now - timedelta(days=2))).grant(
            holder_hash, HR, [identifier], ["category"], "旧授权", now - timedelta(days=1), None
        )
    finally:
        rt.close()
    assert refused(client.get(f"/api/v1/grants/{old.id}/licenses", headers=hr)) == (
        403,
        "GRANT_EXPIRED",
    )
    states = {
        g["id"]: g["state"]
        for g in client.get("/api/v1/holder/grants", headers=as_holder(token)).json()
    }
    assert states == {created["id"]: "revoked", old.id: "expired"}
    assert reads(client.get("/api/v1/holder/receipts", headers=as_holder(token)).json()) == []


def test_forged_expired_and_missing_tokens_are_refused(
    home: Path, client: TestClient, desk: dict[str, str]
) -> None:
    token = mint(client, desk, person_id(8))
    # the token never carries the holder code, in any form
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert person_id(8).encode() not in raw and person_id(8) not in token

    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    rt = open_runtime(load_settings(home))
    try:
        links = holder_links(rt, fixed_clock(datetime.now(UTC) - timedelta(hours=2)))
        expired = links.mint(person_id(8), "111", 30)
        hasher = license_service(rt).holder_hash
    finally:
        rt.close()
    foreign = SignedHolderLinks(secrets.token_bytes(32), hasher).mint(person_id(8), "111")
    for bad in (tampered, expired, foreign, token + "A", "not a token", "x" * 5000):
        resp = client.get("/api/v1/holder/licenses", headers=as_holder(bad))
        assert refused(resp) == (401, "HOLDER_TOKEN_INVALID"), bad
        assert resp.json()["title_zh"] == "链接无效或已过期，请重新获取"
    assert refused(client.get("/api/v1/holder/grants")) == (401, "HOLDER_TOKEN_INVALID")
    assert client.get("/api/v1/holder/grants", headers=as_holder(token)).status_code == 200


def test_signed_links_bounds() -> None:
    links = SignedHolderLinks(link_secret(b"k" * 32), lambda code: "ab" * 32)
    for minutes in (0, 1441, -5):
        with pytest.raises(MalformedInputError):
            links.mint(person_id(9), "111", minutes)
    a, b = links.mint(person_id(9), "111"), links.mint(person_id(9), "111")
    assert a != b  # a fresh nonce each time
    identity = links.holder_of(a)
    assert (identity.holder_hash, identity.holder_code_type, identity.holder_code) == (
        "ab" * 32,
        "111",
        None,
    )
    assert identity.scope == "read"  # unless asked for
    with pytest.raises(HolderScopeError):
        identity.require("consent")
    identity.require("read")
    consent = links.holder_of(links.mint(person_id(9), "111", scope="consent"))
    assert consent.scope == "consent"
    consent.require("consent")
    with pytest.raises(MalformedInputError):
        links.mint(person_id(9), "111", scope="admin")
    # the scope is under the MAC: a read token turned into a consent one is no token
    raw = bytearray(base64.urlsafe_b64decode(a + "=" * (-len(a) % 4)))
    assert raw[:2] == b"\x02\x01"  # version 2, scope read
    raw[1] = 2
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(HolderAuthError):
        links.holder_of(forged)


def test_nothing_can_be_probed(
    home: Path,
    client: TestClient,
    issuer: dict[str, str],
    desk: dict[str, str],
    hr: dict[str, str],
) -> None:
    with_licenses = client.post(
        "/api/v1/holder-links", json={"holder_code": person_id(1)}, headers=desk
    )
    without = client.post("/api/v1/holder-links", json={"holder_code": person_id(99)}, headers=desk)
    assert with_licenses.status_code == without.status_code == 200
    one, other = with_licenses.json(), without.json()
    assert set(one) == set(other) == {"token", "url", "expires_at", "scope"}
    assert len(one["token"]) == len(other["token"])
    assert one["url"].removesuffix(one["token"]) == other["url"].removesuffix(other["token"])
    bad = client.post(
        "/api/v1/holder-links", json={"holder_code": "152501199003071235"}, headers=desk
    )
    assert refused(bad) == (400, "HOLDER_CODE_INVALID")
    assert refused(
        client.post("/api/v1/holder-links", json={"holder_code": person_id(1)}, headers=hr)
    ) == (
        403,
        "FORBIDDEN",
    )

    # Naming another holder's license in a grant: as if it did not exist.
    theirs = issue(client, issuer, 10)
    token = consenting(home, person_id(11))
    foreign = grant(client, token, licenses=[theirs])
    missing = grant(client, token, licenses=["1.2.156.3005.2.nope"])
    assert refused(foreign) == refused(missing) == (404, "NOT_FOUND")
    assert foreign.json()["title"] == missing.json()["title"]


@pytest.mark.parametrize(
    ("changes", "status", "code", "says"),
    [
        ({"fields": ["category", "shoe_size"]}, 400, "MALFORMED_INPUT", "shoe_size"),
        ({"department": "152500-nobody"}, 404, "NOT_FOUND", "152500-nobody"),
        ({"purpose": "  "}, 400, "MALFORMED_INPUT", "purpose"),
        ({"purpose": "x" * 201}, 422, "REQUEST_INVALID", "purpose"),
        ({"days": 366}, 422, "REQUEST_INVALID", "days"),
        ({"days": None}, 400, "MALFORMED_INPUT", "days"),
        ({"expires_at": "2030-01-01T00:00:00+08:00"}, 400, "MALFORMED_INPUT", "days"),
        ({"days": None, "expires_at": "2020-01-01T00:00:00+08:00"}, 400, "MALFORMED_INPUT", "365"),
        ({"days": None, "expires_at": "2099-01-01T00:00:00"}, 400, "MALFORMED_INPUT", "zone"),
        ({"max_uses": 0}, 422, "REQUEST_INVALID", "max_uses"),
        ({"licenses": []}, 422, "REQUEST_INVALID", "licenses"),
        # NUL, lone surrogates and over-long names never reach the database (no HTTP 500)
        ({"licenses": ["1.2.156\u0000"]}, 400, "MALFORMED_INPUT", "license identifier"),
        ({"licenses": ["\ud800"]}, 400, "MALFORMED_INPUT", "license identifier"),
        ({"licenses": ["1" * 129]}, 400, "MALFORMED_INPUT", "128"),
        ({"department": "152500-rsj\u0000"}, 400, "MALFORMED_INPUT", "department code"),
        ({"fields": ["category\u0000"]}, 400, "MALFORMED_INPUT", "field name"),
        ({"purpose": "补贴\u0000"}, 400, "MALFORMED_INPUT", "purpose"),
    ],
)
def test_bad_grants_are_refused(
    home: Path,
    client: TestClient,
    issuer: dict[str, str],
    changes: dict[str, Any],
    status: int,
    code: str,
    says: str,
) -> None:
    token = consenting(home, person_id(12))
    if "licenses" not in changes:
        changes = {"licenses": [issue(client, issuer, 12)], **changes}
    resp = grant(client, token, **changes)
    assert refused(resp) == (status, code), resp.text
    assert says in resp.json()["detail"]
    assert client.get("/api/v1/holder/grants", headers=as_holder(token)).json() == []


def test_no_endpoint_finds_a_holder_by_code_or_name(client: TestClient) -> None:
    """A department reaches a citizen's licenses through a grant id only: no query or path
    parameter anywhere names a holder code or name (GET takes no body either)."""
    schema = client.get("/openapi.json").json()
    searchable = {"holder_code", "holder_name", "holder", "code", "name", "id_number", "uscc"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                name = param["name"].lower().replace("-", "_")
                if param["in"] == "query":
                    assert name not in searchable and "holder" not in name, (path, name)
                if param["in"] == "path":
                    assert "holder" not in name and name not in {"id_number", "uscc"}, (path, name)
            if method == "get":
                assert "requestBody" not in operation, path
    # the holder side takes a token, not a code
    params = schema["paths"]["/api/v1/holder/licenses"]["get"]["parameters"]
    assert {p["name"] for p in params} == {"x-holder-token", "token"}


def test_cli_at_the_service_desk(
    home: Path,
    client: TestClient,
    issuer: dict[str, str],
    hr: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    identifier = issue(client, issuer, 13)
    h = str(home)
    code, out, err = run(
        capsys, "--home", h, "holder", "link", "--holder-code", person_id(13), "--json"
    )
    assert code == 0, err
    link = json.loads(out)
    assert link["url"].endswith("/holder?token=" + link["token"])
    assert link["scope"] == "read"  # unless asked for explicitly
    assert refused(grant(client, link["token"], licenses=[identifier])) == (403, "HOLDER_SCOPE")
    code, out, err = run(
        capsys,
        "--home",
        h,
        "holder",
        "link",
        "--holder-code",
        person_id(13),
        "--scope",
        "consent",
        "--json",
    )
    assert code == 0, err
    token = json.loads(out)["token"]
    created = grant(client, token, licenses=[identifier], max_uses=2).json()
    client.get(created["url"], headers=hr)

    code, out, err = run(capsys, "--home", h, "holder", "grants", "--token", token, "--json")
    assert code == 0, err
    assert [(g["id"], g["uses_left"]) for g in json.loads(out)] == [(created["id"], 1)]
    code, out, _ = run(capsys, "--home", h, "holder", "grants", "--token", token)
    assert created["id"] in out and HR_NAME in out
    code, out, err = run(capsys, "--home", h, "holder", "receipts", "--token", token, "--json")
    assert code == 0, err
    assert [(r["kind"], r["license"], r.get("scope")) for r in json.loads(out)] == [
        ("read", identifier, None),
        ("link", None, "consent"),
        ("link", None, "read"),
    ]
    code, out, _ = run(capsys, "--home", h, "holder", "receipts", "--token", token)
    assert identifier in out and "api:hr-client" in out
    assert "minted a consent link" in out and "minted a read link" in out

    code, out, err = run(capsys, "--home", h, "holder", "link", "--holder-code", person_id(13))
    assert code == 0 and "/holder?token=" in out
    code, _, err = run(capsys, "--home", h, "holder", "grants", "--token", token[:-2] + "xx")
    assert code == 1 and "HOLDER_TOKEN_INVALID" in err
    code, _, err = run(capsys, "--home", h, "holder", "link", "--holder-code", "152501199003071235")
    assert code == 1 and "HOLDER_CODE_INVALID" in err


def test_only_a_service_desk_mints_links(
    home: Path, client: TestClient, desk: dict[str, str], hr: dict[str, str]
) -> None:
    body = {"holder_code": person_id(20)}
    others = [
        api_headers(home, f"not-a-desk-{role}", role)
        for role in ("admin", "ra-officer", "security-officer", "auditor")
    ]
    for headers in [*others, hr]:
        resp = client.post("/api/v1/holder-links", json=body, headers=headers)
        assert refused(resp) == (403, "FORBIDDEN")
        assert "service-desk" in resp.json()["detail"]
    made = client.post("/api/v1/holder-links", json=body, headers=desk)
    assert made.status_code == 200, made.text
    assert made.json()["scope"] == "read"
    # nor does a desk give itself the power to consent for a citizen
    asked = client.post("/api/v1/holder-links", json={**body, "scope": "consent"}, headers=desk)
    assert refused(asked) == (403, "HOLDER_SCOPE")


def test_a_desk_link_reads_but_does_not_consent(
    home: Path, client: TestClient, issuer: dict[str, str], desk: dict[str, str], hr: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 21)
    read = as_holder(mint(client, desk, person_id(21)))
    consent_token = consenting(home, person_id(21))

    (own,) = client.get("/api/v1/holder/licenses", headers=read).json()
    assert own["identifier"] == identifier
    assert client.get(own["links"]["pdf"], headers=read).content.startswith(b"%PDF")
    made = grant(client, read["X-Holder-Token"], licenses=[identifier])
    assert refused(made) == (403, "HOLDER_SCOPE")
    assert made.json()["title_zh"] == "此链接无权进行授权操作"

    created = grant(client, consent_token, licenses=[identifier])
    assert created.status_code == 201, created.text
    url = f"/api/v1/holder/grants/{created.json()['id']}"
    listed = client.get("/api/v1/holder/grants", headers=read).json()
    assert [g["id"] for g in listed] == [created.json()["id"]]
    # withdrawing takes consent too; a missing grant answers alike (nothing to probe)
    assert refused(client.delete(url, headers=read)) == (403, "HOLDER_SCOPE")
    assert refused(client.delete("/api/v1/holder/grants/nope", headers=read)) == (
        403,
        "HOLDER_SCOPE",
    )
    assert client.get(created.json()["url"], headers=hr).status_code == 200  # still active
    assert client.get("/api/v1/holder/receipts", headers=read).status_code == 200
    withdrawn = client.delete(url, headers=as_holder(consent_token))
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "revoked"


def test_receipts_show_every_link_minted(
    home: Path, client: TestClient, desk: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    token = mint(client, desk, person_id(22))
    short = {"holder_code": person_id(22), "minutes": 5}
    assert client.post("/api/v1/holder-links", json=short, headers=desk).status_code == 200
    consenting(home, person_id(22))
    mint(client, desk, person_id(23))  # someone else's

    receipts = client.get("/api/v1/holder/receipts", headers=as_holder(token)).json()
    assert [(r["kind"], r["accessor"][:4], r["scope"]) for r in receipts] == [
        ("link", "cli:", "consent"),
        ("link", "api:", "read"),
        ("link", "api:", "read"),
    ]
    desk_links = [r for r in receipts if r["accessor"] == "api:service-desk"]
    assert len(desk_links) == 2
    for receipt, minutes in zip(desk_links, (5, 30), strict=True):
        at = datetime.fromisoformat(receipt["at"])
        expires_at = datetime.fromisoformat(receipt["expires_at"])
        assert before <= at <= datetime.now(UTC)
        assert abs(expires_at - at - timedelta(minutes=minutes)) < timedelta(seconds=2)
        assert receipt["grant_id"] is None and receipt["license"] is None
    other = as_holder(mint(client, desk, person_id(23)))
    assert [r["scope"] for r in client.get("/api/v1/holder/receipts", headers=other).json()] == [
        "read",
        "read",
    ]


def test_the_token_does_not_carry_the_holder_hash(
    home: Path, client: TestClient, desk: dict[str, str]
) -> None:
    tokens = [mint(client, desk, person_id(24)), consenting(home, person_id(24))]
    rt = open_runtime(load_settings(home))
    try:
        holder_hash = license_service(rt).holder_hash(person_id(24))
        assert {holder_links(rt).holder_of(t).holder_hash for t in tokens} == {holder_hash}
    finally:
        rt.close()
    digest = bytes.fromhex(holder_hash)
    for token in tokens:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert digest not in raw and holder_hash.encode() not in raw
        assert holder_hash not in token and holder_hash.upper() not in token
        assert not any(digest[i : i + 8] in raw for i in range(len(digest) - 7))  # nor a part
        assert person_id(24) not in token and person_id(24).encode() not in raw
    # two links of one person have nothing in common past the version, scope and expiry
    a, b = (base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))[10:] for t in tokens)
    assert not any(a[i : i + 8] in b for i in range(len(a) - 7))


def test_a_download_follows_a_read_within_minutes(
    home: Path, client: TestClient, issuer: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 25)
    start = datetime.now(UTC)
    moment = [start]

    def at(minutes: int) -> None:
        moment[0] = start + timedelta(minutes=minutes)

    clock: Clock = lambda: moment[0]  # noqa: E731
    rt = open_runtime(load_settings(home))
    try:
        holder_hash = license_service(rt).holder_hash(person_id(25))
        service = ConsentService(rt.sessions, clock)
        until = start + timedelta(days=1)

        def download(grant_id: str, fmt: str) -> bytes:
            return service.grant_document(grant_id, HR, "api:hr-client", identifier, fmt)[1]

        once = service.grant(holder_hash, HR, [identifier], ["documents"], "补贴", until, 1)
        with pytest.raises(GrantReadRequiredError):  # no read yet
            download(once.id, "pdf")
        service.fetch(once.id, HR, "api:hr-client")
        at(16)
        with pytest.raises(GrantUsedUpError):  # too late, and no use left to read again
            download(once.id, "pdf")

        at(0)
        many = service.grant(holder_hash, HR, [identifier], ["documents"], "补贴", until, None)
        service.fetch(many.id, HR, "api:hr-client")
        at(15)
        assert download(many.id, "pdf").startswith(b"%PDF")
        with pytest.raises(GrantReadRequiredError):  # one pdf per read
            download(many.id, "pdf")
        at(16)
        with pytest.raises(GrantReadRequiredError):  # the read is too old for the ofd
            download(many.id, "ofd")
        service.fetch(many.id, HR, "api:hr-client")  # reading again opens both again
        assert download(many.id, "ofd").startswith(b"PK")
        assert download(many.id, "pdf").startswith(b"%PDF")
        kinds = [(r.kind, r.at - start) for r in service.receipts(holder_hash)]
        assert kinds[:4] == [
            ("download", timedelta(minutes=16)),
            ("download", timedelta(minutes=16)),
            ("read", timedelta(minutes=16)),
            ("download", timedelta(minutes=15)),
        ]
    finally:
        rt.close()


def test_downloads_racing_on_one_read_get_one_document(
    home: Path, client: TestClient, issuer: dict[str, str], hr: dict[str, str]
) -> None:
    identifier = issue(client, issuer, 26)
    token = consenting(home, person_id(26))
    created = grant(client, token, licenses=[identifier], fields=["documents"], max_uses=2)
    (shared,) = client.get(created.json()["url"], headers=hr).json()["licenses"]
    answers: list[tuple[int, str | None]] = []
    start = threading.Barrier(4)

    def download() -> None:
        start.wait()
        resp = client.get(shared["links"]["pdf"], headers=hr)
        answers.append((resp.status_code, None if resp.is_success else resp.json()["code"]))

    threads = [threading.Thread(target=download) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers, key=str) == [(200, None)] + [(403, "GRANT_READ_REQUIRED")] * 3


def test_nul_and_overlong_names_are_refused_before_the_database(
    home: Path,
    client: TestClient,
    issuer: dict[str, str],
    desk: dict[str, str],
    hr: dict[str, str],
) -> None:
    identifier = issue(client, issuer, 27)
    token = as_holder(consenting(home, person_id(27)))
    created = grant(client, token["X-Holder-Token"], licenses=[identifier], fields=["documents"])
    grant_id = created.json()["id"]
    client.get(created.json()["url"], headers=hr)
    answers = {
        "grant id with NUL": client.get("/api/v1/grants/a%00b/licenses", headers=hr),
        "long grant id": client.get(f"/api/v1/grants/{'x' * 33}/licenses", headers=hr),
        "grant id of a document": client.get(
            f"/api/v1/grants/a%00/licenses/{identifier}/document.pdf", headers=hr
        ),
        "identifier of a grant's document": client.get(
            f"/api/v1/grants/{grant_id}/licenses/a%00b/document.pdf", headers=hr
        ),
        "long identifier": client.get(
            f"/api/v1/grants/{grant_id}/licenses/{'1' * 200}/document.pdf", headers=hr
        ),
        "withdrawn grant with NUL": client.delete("/api/v1/holder/grants/a%00", headers=token),
        "invisible grant id": client.delete("/api/v1/holder/grants/a%E2%80%8B", headers=token),
        "own document with NUL": client.get(
            "/api/v1/holder/licenses/a%00b/document.pdf", headers=token
        ),
        "format with NUL": client.get(
            f"/api/v1/holder/licenses/{identifier}/document.p%00df", headers=token
        ),
    }
    for what, resp in answers.items():
        assert refused(resp) == (400, "MALFORMED_INPUT"), (what, resp.text)
        assert "cannot be stored" not in resp.json()["detail"]  # ours, not the engine's guard
    link = client.post(
        "/api/v1/holder-links", json={"holder_code": person_id(27)[:-1] + "\u0000"}, headers=desk
    )
    assert link.status_code == 400, link.text
    opened = client.get("/api/v1/holder/licenses", params={"token": "a\u0000b"})
    assert refused(opened) == (401, "HOLDER_TOKEN_INVALID")
