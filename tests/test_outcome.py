"""Signed case outcomes (signing/outcome.py): canonical JSON under a timestamped detached CMS."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest

from signing.cms import verify_detached
from signing.outcome import SignedOutcome, sign_outcome, verify_outcome
from tests.signing_pki import SigningPki
from trust.errors import MalformedInputError

OUTCOME: dict[str, Any] = {
    "case": "2024-SCJG-000123",
    "item": "企业名称变更登记",
    "decision": "approved",
    "applicant": {"name": "测试盟某某科技有限公司", "uscc": "91610800064834709T"},
    "fees": [0, 12.5],
    "decided_at": "2024-05-06T09:30:00+08:00",
    "remarks": None,
}


@pytest.fixture(scope="module")
def signed(signing_pki: SigningPki) -> SignedOutcome:
    return sign_outcome(
        OUTCOME,
        signing_pki.signer.key,
        signing_pki.signer.cert,
        chain=signing_pki.chain,
        timestamper=signing_pki.timestamper,
    )


def test_signed_outcome_verifies(signing_pki: SigningPki, signed: SignedOutcome) -> None:
    rep = verify_outcome(OUTCOME, signed.signature, signing_pki.context())
    assert (rep.verdict, rep.reason, rep.format) == ("PASSED", "OK", "outcome"), rep.message
    checks = {c["name"]: c["result"] for c in rep.checks}
    assert checks["timestamp"] == "passed"
    assert rep.details["gen_time"] == signing_pki.now.isoformat()
    assert rep.details["digest_hex"] == signed.digest_hex


def test_canonical_bytes_and_digest(signing_pki: SigningPki, signed: SignedOutcome) -> None:
    assert json.loads(signed.canonical) == OUTCOME
    assert signed.canonical.startswith(b'{"applicant":{"name":"')
    assert b" " not in signed.canonical.replace("有限公司".encode(), b"")
    hash_name = "sm3" if signing_pki.kind == "sm2" else "sha256"
    assert signed.digest_hex == hashlib.new(hash_name, signed.canonical).hexdigest()
    # The signature is an ordinary detached CMS over the canonical bytes.
    assert verify_detached(signed.signature, signed.canonical, signing_pki.context()).passed


def test_canonical_bytes_as_received_verify(signing_pki: SigningPki, signed: SignedOutcome) -> None:
    assert verify_outcome(signed.canonical, signed.signature, signing_pki.context()).passed
    pretty = json.dumps(OUTCOME, ensure_ascii=False, indent=2).encode()
    # Bytes are checked as they are: the same data spelt differently is not what was signed.
    assert verify_outcome(pretty, signed.signature, signing_pki.context()).reason == (
        "HASH_FAILURE"
    )


def test_key_order_and_number_spelling_do_not_matter(
    signing_pki: SigningPki, signed: SignedOutcome
) -> None:
    reordered = json.loads(
        json.dumps(dict(reversed(list(OUTCOME.items()))), ensure_ascii=True).replace(
            "12.5", "1.25E1"
        )
    )
    assert list(reordered) != list(OUTCOME)
    rep = verify_outcome(reordered, signed.signature, signing_pki.context())
    assert rep.passed, rep.message


@pytest.mark.parametrize(
    ("field", "value"),
    [("decision", "rejected"), ("fees", [0, 12.50001]), ("remarks", ""), ("extra", 1)],
)
def test_a_changed_field_is_a_hash_failure(
    signing_pki: SigningPki, signed: SignedOutcome, field: str, value: Any
) -> None:
    changed = {**OUTCOME, field: value}
    rep = verify_outcome(changed, signed.signature, signing_pki.context())
    assert (rep.verdict, rep.reason, rep.format) == ("FAILED", "HASH_FAILURE", "outcome")


def test_untrusted_signer_is_indeterminate(signing_pki: SigningPki, signed: SignedOutcome) -> None:
    rep = verify_outcome(OUTCOME, signed.signature, signing_pki.untrusting_context())
    assert (rep.verdict, rep.reason) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")


def test_bad_input_gives_a_report(signing_pki: SigningPki, signed: SignedOutcome) -> None:
    context = signing_pki.context()
    rep = verify_outcome(OUTCOME, b"not a signature", context)
    assert (rep.reason, rep.format) == ("FORMAT_FAILURE", "outcome")
    rep = verify_outcome({"n": math.nan}, signed.signature, context)
    assert (rep.reason, rep.format) == ("FORMAT_FAILURE", "outcome")
    assert rep.checks[0]["name"] == "outcome.json"


def test_signing_refuses_what_is_not_i_json(signing_pki: SigningPki) -> None:
    party = signing_pki.signer
    bad_outcomes: list[dict[Any, Any]] = [{"n": math.inf}, {"big": 2**60}, {1: "x"}]
    for bad in bad_outcomes:
        with pytest.raises(MalformedInputError):
            sign_outcome(bad, party.key, party.cert)
    with pytest.raises(MalformedInputError):
        sign_outcome(["not", "an", "object"], party.key, party.cert)  # type: ignore[arg-type]
