"""SDF simulator fixtures: the C simulator built with gcc once per session, provisioned per test.

Both ECCref_MAX_LEN builds (64 and 32) are compiled to separate libraries, so each has its own
card state. SM2 keys made by ``openssl genpkey`` sit at indexes 1 and 2 with random passwords.
``SimCard.provision`` resets the card (keys reloaded, failure counters and handles cleared)
before each test. Import into a test module: ``from tests.sdfsim import sdf_sim``.
"""

from __future__ import annotations

import ctypes
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import openssl, openssl_key, require_tool

SOURCE = Path(__file__).parent / "sdf_sim" / "sdf_sim.c"
SDR_COMMFAIL = 0x01000003
SDR_HARDFAIL = 0x01000004
MAX_FAILURES = 3


def build(out_dir: Path, ecc_max_len: int) -> Path:
    """Compile the simulator with the given ECCref_MAX_LEN; a compiler error fails the test."""
    gcc = require_tool("gcc")
    lib = out_dir / f"libsdfsim{ecc_max_len}.so"
    proc = subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-O1",
            "-Wall",
            f"-DECCREF_MAX_LEN={ecc_max_len}",
            "-o",
            str(lib),
            str(SOURCE),
            "-lcrypto",
        ],
        capture_output=True,
        timeout=120,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the SDF simulator failed:\n{proc.stderr.decode(errors='replace')}")
    return lib


@dataclass
class SimCard:
    """One simulator build and the simulator-only controls of its card."""

    lib_path: Path
    ecc_max_len: int
    key_dir: Path
    passwords: dict[int, str]

    def __post_init__(self) -> None:
        self._lib = ctypes.CDLL(str(self.lib_path))  # the same dlopen handle the adapter gets
        self._lib.SIM_Provision.argtypes = [ctypes.c_char_p, ctypes.c_uint]
        self._lib.SIM_Provision.restype = ctypes.c_int
        self._lib.SIM_BreakDevice.argtypes = [ctypes.c_int]
        self._lib.SIM_BreakDevice.restype = None
        self._lib.SIM_RepairDevice.argtypes = []
        self._lib.SIM_RepairDevice.restype = None
        self._lib.SIM_AccessRightAttempts.argtypes = [ctypes.c_uint]
        self._lib.SIM_AccessRightAttempts.restype = ctypes.c_ulong

    def provision(self) -> SimCard:
        rc = self._lib.SIM_Provision(str(self.key_dir).encode(), MAX_FAILURES)
        assert rc == 0, f"SIM_Provision returned 0x{rc:08X}"
        return self

    def break_device(self, code: int = SDR_COMMFAIL) -> None:
        self._lib.SIM_BreakDevice(code)

    def repair(self) -> None:
        self._lib.SIM_RepairDevice()

    def attempts(self, index: int) -> int:
        """How many times GetPrivateKeyAccessRight reached the card for this index."""
        return int(self._lib.SIM_AccessRightAttempts(index))

    def uri(
        self, index: int, *, password: str | None = None, ecc_max_len: int | None = None
    ) -> str:
        pw = self.passwords[index] if password is None else password
        return (
            f"sdf:key-index={index}?module-path={self.lib_path}"
            f"&ecc-max-len={ecc_max_len or self.ecc_max_len}&pin-value={pw}"
        )

    def public_der(self, index: int) -> bytes:
        """The SubjectPublicKeyInfo OpenSSL derives from the provisioned key file."""
        out = openssl("pkey", "-in", self.key_dir / f"key{index}.pem", "-pubout", "-outform", "DER")
        return out.stdout


@dataclass
class SdfSim:
    builds: dict[int, Path]
    key_dir: Path
    passwords: dict[int, str]

    def card(self, ecc_max_len: int = 64) -> SimCard:
        """The card of one build, freshly provisioned."""
        return SimCard(
            self.builds[ecc_max_len], ecc_max_len, self.key_dir, self.passwords
        ).provision()


@pytest.fixture(scope="session")
def sdf_sim(tmp_path_factory: pytest.TempPathFactory) -> SdfSim:
    out = tmp_path_factory.mktemp("sdfsim")
    key_dir = out / "card"
    key_dir.mkdir()
    passwords: dict[int, str] = {}
    for index in (1, 2):
        openssl_key(key_dir / f"key{index}.pem", "sm2")
        passwords[index] = secrets.token_urlsafe(12)
        (key_dir / f"password{index}").write_text(passwords[index] + "\n")
    return SdfSim({n: build(out, n) for n in (64, 32)}, key_dir, passwords)
