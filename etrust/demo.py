"""Demo data for ``etrust init --demo``: a department's seal certificates, an SM2 and an RSA
seal, and an API client."""

from __future__ import annotations

import os
from pathlib import Path

from etrust.runtime import Runtime
from trust.certificates import make_name
from trust.errors import ConflictError, KeyNotFoundError

DEMO_DEPARTMENT = "示范盟市场监督管理局"
DEMO_DEPARTMENT_CODE = "152500-scjg"
DEMO_CLIENT = "demo-ra"
DEMO_TOKEN_FILE = "demo-api-token.txt"  # noqa: S105 (a file name, not a secret)


def seed_demo(rt: Runtime) -> list[str]:
    """Issue one seal-signer certificate per hierarchy and create an RA client; idempotent."""
    created: list[str] = []
    pki = rt.pki()
    for kind, spec in (("sm2", "sm2"), ("rsa", "rsa-2048")):
        label = f"demo-seal-{kind}"
        try:
            rt.keystore.find(f"soft:object={label}")
            continue  # already seeded
        except KeyNotFoundError:
            key = rt.keystore.generate(label, spec)
        pki.ca(f"issuing-{kind}").issue(
            key.public_key_info,
            make_name(
                {
                    "C": "CN",
                    "O": DEMO_DEPARTMENT,
                    "CN": f"{DEMO_DEPARTMENT}电子印章（{kind.upper()}）",
                }
            ),
            "seal-signer",
            identity={"organization_code": "11152500MB1234567X"},
        )
        created.append(f"{label} certificate")
    created += _demo_seals(rt)
    try:
        token = rt.clients.create(DEMO_CLIENT, "ra-officer", department="152500")
    except ConflictError:
        return created
    path = rt.settings.home / DEMO_TOKEN_FILE
    _write_private(path, token + "\n")
    created.append(f"API client {DEMO_CLIENT} (token in {path})")
    return created


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _demo_seals(rt: Runtime) -> list[str]:
    """One SM2 and one RSA seal of the demo department, unless it has them already."""
    from etrust.cli_io import actor
    from etrust.seals import SealRequest, SealStore, make_department_seal

    have = {s.alg for s in SealStore(rt.sessions).list(DEMO_DEPARTMENT_CODE)}
    made = []
    for alg in ("sm2", "rsa"):
        if alg in have:
            continue
        seal = make_department_seal(
            rt,
            actor(),
            SealRequest(DEMO_DEPARTMENT_CODE, DEMO_DEPARTMENT, alg=alg),  # type: ignore[arg-type]
            None,
        )
        made.append(f"{alg} seal {seal.es_id}")
    return made
