"""PIN sources for device URIs: environment, owner-only file, explicit value; never guessed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hsm_adapters.pins import resolve_pin
from trust.errors import ConfigurationError
from trust.keys import KeyUri


def test_sources(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin.txt"
    pin_file.write_text("123456\n")
    os.chmod(pin_file, 0o600)
    env = {"ETRUST_PKCS11_PIN": "from-default", "HALL_PIN": "from-named"}
    cases = {
        f"pkcs11:token=t?pin-source=file:{pin_file}": "123456",
        f"pkcs11:token=t?pin-source={pin_file}": "123456",
        "pkcs11:token=t?pin-source=env:HALL_PIN": "from-named",
        "pkcs11:token=t?pin-value=4321": "4321",
        "pkcs11:token=t": "from-default",
    }
    for uri, pin in cases.items():
        assert resolve_pin(KeyUri.parse(uri), default_env="ETRUST_PKCS11_PIN", environ=env) == pin


def test_refusals(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin.txt"
    pin_file.write_text("123456")
    os.chmod(pin_file, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600") as info:
        resolve_pin(
            KeyUri.parse(f"pkcs11:token=t?pin-source=file:{pin_file}"), default_env="X", environ={}
        )
    assert "123456" not in str(info.value)
    with pytest.raises(ConfigurationError, match="MISSING_PIN"):
        resolve_pin(
            KeyUri.parse("pkcs11:token=t?pin-source=env:MISSING_PIN"), default_env="X", environ={}
        )
    with pytest.raises(ConfigurationError, match="cannot be read"):
        resolve_pin(
            KeyUri.parse(f"pkcs11:token=t?pin-source=file:{tmp_path / 'nope'}"),
            default_env="X",
            environ={},
        )
    with pytest.raises(ConfigurationError, match="no PIN"):
        resolve_pin(KeyUri.parse("pkcs11:token=t"), default_env="X", environ={})
