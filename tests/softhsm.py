"""SoftHSM2 fixtures: a throw-away token directory per test run and a fresh token per test.

SoftHSM reads ``SOFTHSM2_CONF`` and scans its token directory once, when the module is first
initialised in the process; tokens made later by ``softhsm2-util`` stay invisible to it. So the
session fixture makes the directory, its config and ``TOKENS`` empty tokens up front, and
``softhsm_token`` hands each test one of them, unused. Import the fixtures into a test module:
``from tests.softhsm import softhsm, softhsm_token``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool

MODULE = os.environ.get("ETRUST_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
USER_PIN = "24681357"
SO_PIN = "13572468"

TOKENS = 16
"""Tokens made per test run; raise it when more tests need a fresh token."""


@dataclass(frozen=True)
class Token:
    """One initialised SoftHSM token and what a test needs to reach it."""

    module: str
    label: str
    pin: str
    so_pin: str

    def uri(self, **path: str) -> str:
        """A ``pkcs11:`` URI for this token (and an object), PIN passed by value for tests."""
        attrs = ";".join([f"token={self.label}", *(f"{k}={v}" for k, v in path.items())])
        return f"pkcs11:{attrs}?module-path={self.module}&pin-value={self.pin}"


@dataclass
class SoftHsm:
    """A SoftHSM2 token directory with its config file; ``init_token`` adds tokens to it."""

    module: str
    util: str
    conf: Path
    tokendir: Path
    spare: list[Token] = field(default_factory=list)

    def take_token(self) -> Token:
        """An initialised token no other test has used."""
        if not self.spare:
            pytest.fail(f"all {TOKENS} SoftHSM test tokens are used; raise TOKENS")
        return self.spare.pop(0)

    def init_token(self, label: str, pin: str = USER_PIN, so_pin: str = SO_PIN) -> Token:
        args = ["--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin]
        proc = subprocess.run(
            [self.util, *args],
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
            timeout=60,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"softhsm2-util --init-token failed: {proc.stderr.decode(errors='replace')}"
            )
        return Token(self.module, label, pin, so_pin)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = require_tool("softhsm2-util")
    if not Path(MODULE).exists():
        message = f"the SoftHSM2 PKCS#11 module {MODULE} is missing"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("softhsm")
    tokendir = base / "tokens"
    tokendir.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n"
    )
    patch = pytest.MonkeyPatch()
    patch.setenv("SOFTHSM2_CONF", str(conf))
    try:
        hsm = SoftHsm(MODULE, util, conf, tokendir)
        hsm.spare.extend(hsm.init_token(f"t{i}") for i in range(1, TOKENS + 1))
        yield hsm
    finally:
        patch.undo()


@pytest.fixture
def softhsm_token(softhsm: SoftHsm) -> Token:
    """An empty token of its own for one test."""
    return softhsm.take_token()
