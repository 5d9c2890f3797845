"""Settings: the home folder, the database URL and the public base URL, from env and etrust.toml.

Precedence: explicit arguments, then environment (``ETRUST_*``), then ``HOME/etrust.toml``, then
defaults. Built by the app factory and the CLI, never at import time.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trust.errors import ConfigurationError

DEFAULT_HOME = Path("var")
DEFAULT_BASE_URL = "http://127.0.0.1:8000"

PROJECT_ARC = "2.25.30270162408059470225939277506884911126"
"""Our OID arc, minted from a UUID (ITU-T X.667), for demo policies until an operator sets its own."""
DEMO_CERTIFICATE_POLICY = f"{PROJECT_ARC}.1.2"
DEMO_TSA_POLICY = f"{PROJECT_ARC}.1.1"


@dataclass(frozen=True)
class NamingSettings:
    """Distinguished names of the CA hierarchy; the demo uses a league (盟) government."""

    country: str = "CN"
    organization: str = "示范盟行政审批和政务服务局"
    root_common_name: str = "示范盟政务服务根证书"
    issuing_common_name: str = "示范盟政务服务签发证书"
    policy_oids: tuple[str, ...] = (DEMO_CERTIFICATE_POLICY,)
    area_code: str = "159900"
    """GB/T 2260 administrative division code of the operator: the first 6 digits of the seal
    codes (esID) made here. The demo's is fictional."""


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    base_url: str = DEFAULT_BASE_URL
    key_passphrase: str | None = field(default=None, repr=False)
    kek_file: Path | None = None
    naming: NamingSettings = field(default_factory=NamingSettings)
    crl_validity_hours: int = 24
    ocsp_validity_minutes: int = 60
    tsa_policy_oid: str = DEMO_TSA_POLICY
    max_upload_bytes: int = 1 << 20
    dual_control: dict[str, int] = field(default_factory=dict)
    device_modules: tuple[str, ...] = ()
    """Device libraries (PKCS#11, SKF, SDF) key URIs may name (etrust.toml device_modules)."""
    """Operation -> approvals required from distinct security officers (etrust.toml [dual_control])."""

    @property
    def keys_folder(self) -> Path:
        return self.home / "keys"

    @property
    def config_path(self) -> Path:
        return self.home / "etrust.toml"


def load_settings(home: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    environ = os.environ if env is None else env
    home_path = Path(home or environ.get("ETRUST_HOME") or DEFAULT_HOME).expanduser().resolve()
    file_values = _read_toml(home_path / "etrust.toml")
    pki = file_values.get("pki", {})
    if not isinstance(pki, dict):
        raise ConfigurationError("[pki] in etrust.toml must be a table")
    naming_values: dict[str, Any] = {k: _text(k, v) for k, v in pki.items() if k in _NAMING_KEYS}
    if "policy_oids" in pki:
        naming_values["policy_oids"] = _oids(pki["policy_oids"])
    if not re.fullmatch(r"[1-9][0-9]{5}", naming_values.get("area_code", "159900")):
        raise ConfigurationError("etrust.toml: pki.area_code must be a 6-digit division code")
    naming = NamingSettings(**naming_values)
    database_url = (
        environ.get("ETRUST_DATABASE_URL")
        or file_values.get("database_url")
        or f"sqlite:///{home_path / 'etrust.db'}"
    )
    kek = environ.get("ETRUST_KEK_FILE") or file_values.get("kek_file")
    return Settings(
        home=home_path,
        database_url=str(database_url),
        base_url=str(
            environ.get("ETRUST_BASE_URL") or file_values.get("base_url") or DEFAULT_BASE_URL
        ).rstrip("/"),
        key_passphrase=environ.get("ETRUST_KEY_PASSPHRASE") or None,
        kek_file=Path(kek) if kek else None,
        naming=naming,
        tsa_policy_oid=_oids([file_values.get("tsa_policy_oid") or DEMO_TSA_POLICY])[0],
        dual_control=_dual_control(file_values.get("dual_control", {})),
        device_modules=_paths(file_values.get("device_modules", [])),
        **{k: _positive(k, file_values[k]) for k in _INT_KEYS if k in file_values},
    )


_NAMING_KEYS = {"country", "organization", "root_common_name", "issuing_common_name", "area_code"}
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"etrust.toml: pki.{key} must be a non-empty string")
    return value


def _oids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _OID.fullmatch(v) for v in value
    ):
        raise ConfigurationError(
            f"etrust.toml: policy OIDs must be a list of dotted OIDs, not {value!r}"
        )
    return tuple(value)


DUAL_CONTROL_OPERATIONS = (
    "ca.issue.root",
    "ca.issue.ca",
    "key.destroy",
    "ceremony.run",
    "officer.add",
    "seal.make",
)
"""Operations that can be put under dual control."""


def _dual_control(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigurationError("etrust.toml: [dual_control] must be a table of operation = count")
    for op, count in value.items():
        if op not in DUAL_CONTROL_OPERATIONS:
            raise ConfigurationError(
                f"etrust.toml: unknown dual-control operation {op!r}; "
                f"known: {', '.join(DUAL_CONTROL_OPERATIONS)}"
            )
        _positive(f"dual_control.{op}", count)
    return dict(value)


def _paths(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v.startswith("/") for v in value
    ):
        raise ConfigurationError("etrust.toml: device_modules is a list of absolute library paths")
    return tuple(value)


def _positive(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(
            f"etrust.toml: {key} must be a positive whole number, not {value!r}"
        )
    return value


_INT_KEYS = ("crl_validity_hours", "ocsp_validity_minutes", "max_upload_bytes")


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
