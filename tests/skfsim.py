"""The SKF USB-key simulator for tests: build it with gcc, provision a device, pull it out.

The simulator (tests/skf_sim/skf_sim.c) is compiled once per test session, in both ULONG widths,
into a temporary folder. Its state is a directory tree, loaded by ``SIM_Provision``; the adapter
under test loads the same shared object by path, so both see one simulated device.
"""

from __future__ import annotations

import ctypes
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool

SOURCE = Path(__file__).parent / "skf_sim" / "skf_sim.c"
WIDTHS = (32, 64)


def build_simulator(folder: Path, bits: int) -> Path:
    """Compile the simulator for one ULONG width; a failed build fails the test with gcc's words."""
    gcc = require_tool("gcc")
    out = folder / f"libskfsim{bits}.so"
    args = [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-o", str(out), str(SOURCE), "-lcrypto"]
    if bits == 64:
        args.insert(1, "-DSKF_ULONG_64")
    proc = subprocess.run(args, capture_output=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"building the SKF simulator failed:\n{proc.stderr.decode(errors='replace')}")
    return out


@dataclass
class Container:
    """One container to provision: a PEM private key and, optionally, a DER certificate."""

    name: str
    key_pem: bytes
    cert_der: bytes | None = None


class SkfSimulator:
    """Controls one built simulator library (provisioning, removal, handle count)."""

    def __init__(self, library: Path, bits: int) -> None:
        self.library = library
        self.bits = bits
        lib = ctypes.CDLL(str(library))
        self._provision = lib.SIM_Provision
        self._provision.argtypes = [ctypes.c_char_p]
        self._provision.restype = ctypes.c_uint32
        for name in ("SIM_RemoveDevice", "SIM_InsertDevice"):
            getattr(lib, name).argtypes = [ctypes.c_char_p]
            getattr(lib, name).restype = ctypes.c_uint32
        lib.SIM_OpenHandleCount.restype = ctypes.c_uint32
        lib.SIM_UlongBits.restype = ctypes.c_uint32
        self._lib = lib
        assert lib.SIM_UlongBits() == bits

    def provision(
        self,
        root: Path,
        containers: list[Container],
        *,
        device: str = "UKEY01",
        application: str = "ETRUST",
        pin: str = "11223344",
        max_retries: int = 6,
    ) -> Path:
        """Write the device tree under ``root`` and load it (all earlier state is dropped)."""
        app = root / device / application
        app.mkdir(parents=True, exist_ok=True)
        (app / "user.pin").write_text(pin + "\n")
        (app / "max_retries").write_text(f"{max_retries}\n")
        for c in containers:
            folder = app / c.name
            folder.mkdir(exist_ok=True)
            (folder / "sign.key.pem").write_bytes(c.key_pem)
            if c.cert_der is not None:
                (folder / "sign.cert.der").write_bytes(c.cert_der)
        rv = self._provision(str(root).encode())
        if rv != 0:
            pytest.fail(f"SIM_Provision({root}) returned 0x{rv:08X}")
        return root

    def remove(self, device: str = "UKEY01") -> None:
        assert self._lib.SIM_RemoveDevice(device.encode()) == 0

    def insert(self, device: str = "UKEY01") -> None:
        assert self._lib.SIM_InsertDevice(device.encode()) == 0

    def open_handles(self) -> int:
        return int(self._lib.SIM_OpenHandleCount())


@pytest.fixture(scope="session")
def skf_libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Both builds of the simulator, compiled once per session."""
    folder = tmp_path_factory.mktemp("skfsim-build")
    return {bits: build_simulator(folder, bits) for bits in WIDTHS}


@pytest.fixture(params=WIDTHS, ids=[f"ulong{b}" for b in WIDTHS])
def skf_sim(request: pytest.FixtureRequest, skf_libraries: dict[int, Path]) -> SkfSimulator:
    """A simulator of each ULONG width; each test provisions its own device."""
    bits: int = request.param
    return SkfSimulator(skf_libraries[bits], bits)
