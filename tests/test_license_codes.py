"""License codes verified end to end: issue, print the QR code, read it back from the image,
verify offline with the trust list (and the status list), online with the registry; revoke and
see the verdicts change; and every kind of bad code gets its own reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from etrust.app import create_app
from etrust.cli import main
from etrust.demo import DEMO_DEPARTMENT_CODE, demo_license_types
from etrust.settings import load_settings
from license_store.holder_codes import resident_id_check
from signing import license_qr
from tests.cli_run import run
from tests.officers import api_headers
from trust.certificates import load_certificate
from trust.errors import InvalidSignatureError, MalformedInputError
from verify_app.trust_list import read_trust_list

WORKER = demo_license_types()[0]
HOLDER = "152501199003071234"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("codes")
    assert main(["--home", str(path), "init", "--demo"]) == 0
    return path


@pytest.fixture(scope="module")
def client(home: Path) -> TestClient:
    return TestClient(create_app(load_settings(home)))


@pytest.fixture(scope="module")
def department(home: Path) -> dict[str, str]:
    return api_headers(home, "codes-dept", "department", DEMO_DEPARTMENT_CODE)


def issue(client: TestClient, department: dict[str, str], **changes: Any) -> dict[str, Any]:
    body = {
        "type_code": WORKER.code,
        "holder_name": "王小明",
        "holder_code": HOLDER,
        "data": WORKER.example,
        **changes,
    }
    resp = client.post("/api/v1/licenses", json=body, headers=department)
    assert resp.status_code == 201, resp.text
    issued: dict[str, Any] = resp.json()
    return issued


def verify(client: TestClient, code: str, **extra: Any) -> dict[str, Any]:
    resp = client.post("/api/v1/verify", json={"code": code, **extra})
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def test_print_scan_verify_offline_and_online_then_revoke(
    home: Path,
    client: TestClient,
    department: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    identifier = issue(client, department)["identifier"]
    png, trust, status = tmp_path / "code.png", tmp_path / "trust.json", tmp_path / "status.json"
    assert run(capsys, "--home", str(home), "license", "qr", identifier, "--out", str(png))[0] == 0
    assert run(capsys, "--home", str(home), "trust-list", "export", "--out", str(trust))[0] == 0
    code, out, err = run(
        capsys, "--home", str(home), "license", "status-list", "--out", str(status)
    )
    assert code == 0, err

    # offline: no home at all, the trust list and the status list only
    root = tmp_path / "root.pem"
    assert run(capsys, "--home", str(home), "ca", "export", "root-sm2", "--out", str(root))[0] == 0
    offline = ["verify", str(png), "--offline", "--trust-list", str(trust), "--trust", str(root)]
    offline.append("--json")
    code, out, err = run(capsys, *offline, "--status-list", str(status), "--holder-code", HOLDER)
    answer = json.loads(out)
    assert (code, answer["verdict"], answer["reason"]) == (0, "valid", "OK"), out + err
    assert answer["license"]["identifier"] == identifier and answer["holder_match"] is True
    assert answer["status"]["source"] == "status-list"
    code, out, _ = run(capsys, *offline)  # without a status list: cannot tell
    assert (code, json.loads(out)["reason"]) == (2, "STATUS_UNKNOWN")
    from datetime import UTC, datetime, timedelta

    for days, reason in ((2, "STATUS_STALE"), (8, "TRUST_LIST_STALE")):  # lists grow old
        later = (datetime.now(UTC) + timedelta(days=days)).isoformat()
        code, out, _ = run(capsys, *offline, "--status-list", str(status), "--at", later)
        assert (code, json.loads(out)["reason"]) == (2, reason)

    # online (the home's registry) from the image
    code, out, _ = run(capsys, "--home", str(home), "verify", str(png), "--json")
    assert (code, json.loads(out)["status"]["source"]) == (0, "online")

    code, _, err = run(
        capsys, "--home", str(home), "license", "revoke", identifier, "--reason", "测试"
    )
    assert code == 0, err
    code, out, _ = run(capsys, "--home", str(home), "verify", str(png), "--json")
    assert (code, json.loads(out)["reason"]) == (1, "REVOKED")
    # the cached status list still says valid, and says how old it is
    code, out, _ = run(capsys, *offline, "--status-list", str(status))
    assert code == 0 and json.loads(out)["status"]["age_seconds"] >= 0


def test_verdicts_over_the_api(
    home: Path, client: TestClient, department: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    other = "15250119900307125"
    other += resident_id_check(other)
    fresh = issue(client, department, holder_code=other)
    answer = verify(client, fresh["qr_text"], holder_code=HOLDER)
    assert (answer["verdict"], answer["holder_match"]) == ("valid", False)
    assert answer["license"]["holder_name"] == "王**"
    assert other not in json.dumps(answer)

    expired = issue(client, department, holder_code=other, valid_from="2023-01-01")
    assert verify(client, expired["qr_text"])["reason"] == "EXPIRED"

    payload = bytearray(license_qr.from_text(fresh["qr_text"]))
    payload[20] ^= 0x01  # one bit of the type code
    forged = license_qr.to_text(bytes(payload), base_of(fresh))
    assert verify(client, forged)["reason"] in ("SIGNATURE_INVALID", "NOT_A_LICENSE_CODE")
    payload = bytearray(license_qr.from_text(fresh["qr_text"]))
    payload[-5] ^= 0x01  # the signature
    assert verify(client, license_qr.to_text(bytes(payload), base_of(fresh)))["reason"] == (
        "SIGNATURE_INVALID"
    )
    payload = bytearray(license_qr.from_text(fresh["qr_text"]))
    payload[3:11] = b"\x00" * 8  # a key id nobody has
    answer = verify(client, license_qr.to_text(bytes(payload), base_of(fresh)))
    # online the server's list is the registry's own: a key it does not know is not ours
    assert (answer["verdict"], answer["reason"]) == ("invalid", "KEY_NOT_OURS")
    truncated = fresh["qr_text"][:-20]
    assert verify(client, truncated)["reason"] == "NOT_A_LICENSE_CODE"
    phishing = "https://evil.example/phish#" + fresh["qr_text"].split("#", 1)[1]
    assert verify(client, phishing)["reason"] == "FOREIGN_SITE"  # a genuine payload, elsewhere
    reencoded = (
        base_of(fresh) + "#" + base64.b64encode(license_qr.from_text(fresh["qr_text"])).decode()
    )
    assert verify(client, reencoded)["verdict"] in (
        "valid",
        "invalid",
    )  # std base64: read or refused
    for text in ("", "你好", "https://www.example.com/", "https://evil.example/v#https://x"):
        answer = verify(client, text)
        assert (answer["verdict"], answer["reason"]) == ("invalid", "NOT_A_LICENSE_CODE"), text
    newer = license_qr.to_text(b"L\x09" + bytes(payload[2:]), base_of(fresh))
    assert verify(client, newer)["reason"] == "UNKNOWN_FORMAT"
    refused = client.post("/api/v1/verify", json={"code": "x" * 5000})
    assert (refused.status_code, refused.json()["code"]) == (400, "MALFORMED_INPUT")


def test_the_trust_list(home: Path, client: TestClient, department: dict[str, str]) -> None:
    issue(client, department)
    data = client.get("/api/v1/trust-list").content
    listed = read_trust_list(data, anchors=None)
    assert len(listed.qr_keys) == 1
    entry = next(iter(listed.qr_keys.values()))
    assert entry.department == DEMO_DEPARTMENT_CODE
    roots = [load_certificate(r) for r in listed.roots]  # the SM2 and the RSA root
    assert read_trust_list(data, anchors=roots).number == listed.number
    foreign = load_certificate(listed.intermediates[0])
    with pytest.raises(InvalidSignatureError):
        read_trust_list(data, anchors=[foreign])
    forged = data.replace(DEMO_DEPARTMENT_CODE.encode(), b"152500-fake")
    with pytest.raises(InvalidSignatureError):
        read_trust_list(forged, anchors=None)
    with pytest.raises(MalformedInputError):
        read_trust_list(b"{}", anchors=None)
    # A key under the same root but not certified to publish (a department's QR key) cannot
    # pass off a trust list of its own.
    from datetime import UTC, datetime

    from etrust.qr_keys import department_qr_key
    from etrust.runtime import open_runtime
    from verify_app.trust_list import build_trust_list

    rt = open_runtime(load_settings(home))
    try:
        qr = department_qr_key(rt, DEMO_DEPARTMENT_CODE)
        rogue = build_trust_list(
            number=listed.number + 1,
            issued_at=datetime.now(UTC),
            roots=[load_certificate(r) for r in listed.roots],
            intermediates=[load_certificate(i) for i in listed.intermediates],
            qr_keys=list(listed.qr_keys.values()),
            seals=[],
            status_list_url="",
            signer_key=qr.key,
            signer_certificate=load_certificate(qr.certificate_der),
        )
    finally:
        rt.close()
    with pytest.raises(InvalidSignatureError, match="not certified to publish"):
        read_trust_list(rogue, anchors=None)


def test_uploads_photos_and_documents_and_the_record(
    home: Path, client: TestClient, department: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    issued = issue(client, department)
    identifier = issued["identifier"]
    png = tmp_path / "photo.png"
    assert run(capsys, "--home", str(home), "license", "qr", identifier, "--out", str(png))[0] == 0
    desk = api_headers(home, "window-7", "service-desk", DEMO_DEPARTMENT_CODE)

    def upload(name: str, data: bytes, **form: str) -> dict[str, Any]:
        resp = client.post("/api/v1/verify", files={"file": (name, data)}, data=form, headers=desk)
        assert resp.status_code == 200, resp.text
        answer: dict[str, Any] = resp.json()
        return answer

    answer = upload("photo.png", png.read_bytes(), channel="window", holder_code=HOLDER)
    assert (answer["kind"], answer["verdict"], answer["holder_match"]) == ("image", "valid", True)
    pdf = client.get(f"/api/v1/licenses/{identifier}/document.pdf", headers=department).content
    answer = upload("license.pdf", pdf)
    assert (answer["kind"], answer["verdict"], answer["reason"]) == ("document", "valid", "OK")
    tampered = (
        pdf.replace(b"/Lang (zh-CN)", b"/Lang (en-US)") if b"/Lang (zh-CN)" in pdf else pdf[:-10]
    )
    assert upload("license.pdf", tampered)["verdict"] in ("invalid", "unknown")
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (200, 200), 255).save(blank)
    answer = upload("blank.png", blank.read_bytes())
    assert (answer["verdict"], answer["reason"]) == ("invalid", "NO_CODE_FOUND")
    answer = upload("notes.txt", "会议纪要".encode())
    assert (answer["verdict"], answer["reason"]) == ("invalid", "UNSUPPORTED_FORMAT")
    broken = client.post(
        "/api/v1/verify", files={"file": ("x.png", b"\x89PNG\r\n\x1a\nbroken")}, headers=desk
    )
    assert (broken.status_code, broken.json()["code"]) == (400, "MALFORMED_INPUT")

    from sqlalchemy import select

    from etrust.api_verify import recorder
    from etrust.runtime import open_runtime
    from storage.engine import transaction
    from verify_app.models import VerificationCheckRow

    recorder(client.app.state.services).flush()  # type: ignore[attr-defined]
    rt = open_runtime(load_settings(home))
    try:
        with transaction(rt.sessions) as session:
            rows = list(
                session.scalars(
                    select(VerificationCheckRow).where(VerificationCheckRow.actor == "api:window-7")
                )
            )
    finally:
        rt.close()
    assert [(r.kind, r.verdict) for r in rows][:2] == [("image", "valid"), ("document", "valid")]
    assert rows[0].identifier == identifier and rows[0].channel == "window"


def test_a_compromised_qr_key_is_withdrawn_and_replaced(
    home: Path, client: TestClient, department: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Revoking a department's QR key (key compromise) refuses every code it signed, even
    backdated ones; the next license gets a new key, which the trust list carries too."""
    from etrust.pki import LOG_IDENTITY
    from etrust.qr_keys import department_qr_key
    from etrust.runtime import open_runtime

    old = issue(client, department)
    rt = open_runtime(load_settings(home))
    try:
        key = department_qr_key(rt, DEMO_DEPARTMENT_CODE)
        serial = format(load_certificate(key.certificate_der).serial_number, "x")
        log_cert = rt.identities.get(LOG_IDENTITY)
        assert log_cert is not None
    finally:
        rt.close()
    code, _, err = run(
        capsys, "--home", str(home), "cert", "revoke", serial, "--reason", "key_compromise",
        "--ca", "issuing-sm2",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "--home", str(home), "verify", "--code", old["qr_text"], "--json")
    assert (code, json.loads(out)["reason"]) == (1, "KEY_WITHDRAWN")
    new = issue(client, department)
    code, out, _ = run(capsys, "--home", str(home), "verify", "--code", new["qr_text"], "--json")
    assert (code, json.loads(out)["reason"]) == (0, "OK")
    assert license_qr.decode(license_qr.from_text(new["qr_text"])).code.key_id != (
        license_qr.decode(license_qr.from_text(old["qr_text"])).code.key_id
    )
    trust = tmp_trust = home / "trust-after.json"
    assert run(capsys, "--home", str(home), "trust-list", "export", "--out", str(tmp_trust))[0] == 0
    listed = read_trust_list(trust.read_bytes(), anchors=None)
    withdrawn = [k for k in listed.qr_keys.values() if k.withdrawn_at]
    assert len(listed.qr_keys) == 2 and len(withdrawn) == 1
    assert withdrawn[0].withdrawn_reason == "key_compromise"
    assert listed.signer == log_cert.certificate_der  # signed by the publication key


def test_a_trust_list_from_another_registry_is_refused(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another registry's publication key, with our pinned root copied into its list: the
    list's own roots vouch for nothing; only the pinned ones do."""
    from datetime import UTC, datetime

    from etrust.pki import LOG_IDENTITY
    from etrust.runtime import open_runtime
    from verify_app.trust_list import build_trust_list

    other = tmp_path / "other"
    assert main(["--home", str(other), "init"]) == 0
    ours = open_runtime(load_settings(home))
    theirs = open_runtime(load_settings(other))
    try:
        our_root = ours.pki().ca("root-sm2").certificate
        their_log = theirs.identities.get(LOG_IDENTITY)
        assert their_log is not None
        forged = build_trust_list(
            number=1,
            issued_at=datetime.now(UTC),
            roots=[our_root, theirs.pki().ca("root-sm2").certificate],
            intermediates=[theirs.pki().ca("issuing-sm2").certificate],
            qr_keys=[],
            seals=[],
            status_list_url="",
            signer_key=theirs.keys.find(their_log.key_uri),
            signer_certificate=load_certificate(their_log.certificate_der),
        )
    finally:
        ours.close()
        theirs.close()
    with pytest.raises(InvalidSignatureError):
        read_trust_list(forged, anchors=[our_root])
    with pytest.raises(InvalidSignatureError, match="pin a root"):
        read_trust_list(forged, anchors=[])
    path = tmp_path / "forged.json"
    path.write_bytes(forged)
    code, _, err = run(capsys, "verify", "--code", "x", "--offline", "--trust-list", str(path))
    assert code == 2 and "--trust" in err


def test_hostile_codes_and_photos_never_give_a_500(
    client: TestClient, department: dict[str, str], tmp_path: Path
) -> None:
    import io as _io

    from PIL import Image

    issued = issue(client, department)
    payload = bytearray(license_qr.from_text(issued["qr_text"]))
    name_at = 2 + 1 + 8 + 21 + 18 + 1 + payload[50] + 8 + 1
    payload[name_at] = 0xFF  # the name is no longer UTF-8
    answer = verify(client, license_qr.to_text(bytes(payload), base_of(issued)))
    assert answer["reason"] == "NOT_A_LICENSE_CODE"
    for text in ("TEST", "THANKS", "TAKE-ME", "TEST#TEST", "https://x/v#+/+/"):
        assert verify(client, text)["reason"] == "NOT_A_LICENSE_CODE", text
    png = license_qr_png(issued["qr_text"])
    for position in range(8, len(png), max(1, len(png) // 60)):  # damaged anywhere
        damaged = png[:position] + bytes([png[position] ^ 0x5A]) + png[position + 1 :]
        resp = client.post("/api/v1/verify", files={"file": ("x.png", damaged)})
        assert resp.status_code in (200, 400), (position, resp.status_code, resp.text)
    big = _io.BytesIO()
    Image.new("L", (5000, 5000), 255).save(big, format="PNG")
    resp = client.post("/api/v1/verify", files={"file": ("big.png", big.getvalue())})
    assert (resp.status_code, resp.json()["code"]) == (413, "INPUT_TOO_LARGE")


def base_of(issued: dict[str, Any]) -> str:
    """The verify page a license's code points at (``<base_url>/v``)."""
    return str(issued["qr_text"]).split("#", 1)[0]


def license_qr_png(text: str) -> bytes:
    from signing.qr import qr_symbol

    return qr_symbol(text).png


def test_documents_of_revoked_licenses_are_not_valid(
    client: TestClient, department: dict[str, str]
) -> None:
    """The file is intact, but the license it carries was revoked: 无效, and the reason says
    both; a document that is no license keeps its signature's verdict."""
    issued = issue(client, department)
    identifier = issued["identifier"]
    documents = {
        fmt: client.get(f"/api/v1/licenses/{identifier}/document.{fmt}", headers=department).content
        for fmt in ("pdf", "ofd")
    }
    for fmt, data in documents.items():
        resp = client.post("/api/v1/verify", files={"file": (f"l.{fmt}", data)})
        answer = resp.json()
        assert (answer["verdict"], answer["license"]["identifier"]) == ("valid", identifier), fmt
    client.post(
        f"/api/v1/licenses/{identifier}/status",
        json={"action": "revoke", "reason": "测试"},
        headers=department,
    )
    for fmt, data in documents.items():
        answer = client.post("/api/v1/verify", files={"file": (f"l.{fmt}", data)}).json()
        assert (answer["verdict"], answer["reason"]) == ("invalid", "REVOKED"), fmt
        assert "文件签章完整" in answer["message_zh"]


def test_an_update_appended_to_a_license_pdf_cannot_change_which_license_it_is(
    client: TestClient, department: dict[str, str]
) -> None:
    import io as _io

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    revoked, other = issue(client, department), issue(client, department)
    pdf = client.get(
        f"/api/v1/licenses/{revoked['identifier']}/document.pdf", headers=department
    ).content
    client.post(
        f"/api/v1/licenses/{revoked['identifier']}/status",
        json={"action": "revoke", "reason": "测试"},
        headers=department,
    )
    for subject in (other["identifier"], "-"):
        writer = IncrementalPdfFileWriter(_io.BytesIO(pdf))
        info = writer.trailer["/Info"]
        info[generic.NameObject("/Subject")] = generic.TextStringObject(subject)
        writer.update_container(info)
        out = _io.BytesIO()
        writer.write(out)
        answer = client.post("/api/v1/verify", files={"file": ("l.pdf", out.getvalue())}).json()
        assert answer["verdict"] != "valid", (subject, answer)


def test_a_photo_with_other_qr_codes_checks_the_license(
    client: TestClient, department: dict[str, str]
) -> None:
    import io as _io

    from PIL import Image

    from signing.qr import qr_symbol

    issued = issue(client, department)
    poster = Image.open(_io.BytesIO(qr_symbol("https://www.example.com/wifi").png)).convert("L")
    license_code = Image.open(_io.BytesIO(qr_symbol(issued["qr_text"]).png)).convert("L")
    photo = Image.new("L", (poster.width + license_code.width + 40, 700), 255)
    photo.paste(poster, (0, 0))
    photo.paste(license_code, (poster.width + 40, 0))
    out = _io.BytesIO()
    photo.save(out, format="PNG")
    answer = client.post("/api/v1/verify", files={"file": ("p.png", out.getvalue())}).json()
    assert (answer["verdict"], answer["license"]["identifier"]) == ("valid", issued["identifier"])
