"""Settings from environment and etrust.toml: precedence and refusal of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from etrust.settings import DEMO_TSA_POLICY, load_settings
from trust.errors import ConfigurationError


def test_defaults_and_precedence(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={})
    assert s.database_url == f"sqlite:///{tmp_path / 'etrust.db'}"
    assert s.tsa_policy_oid == DEMO_TSA_POLICY and s.key_passphrase is None
    (tmp_path / "etrust.toml").write_text(
        'base_url = "https://pki.example.gov.cn/"\ncrl_validity_hours = 12\n'
        '[pki]\norganization = "某盟行政审批局"\npolicy_oids = ["1.2.3.4"]\n',
        "utf-8",
    )
    s = load_settings(
        tmp_path, env={"ETRUST_BASE_URL": "https://other.example/", "ETRUST_KEY_PASSPHRASE": "pw"}
    )
    assert s.base_url == "https://other.example"  # environment wins, trailing slash dropped
    assert s.crl_validity_hours == 12 and s.naming.organization == "某盟行政审批局"
    assert s.naming.policy_oids == ("1.2.3.4",)
    assert "pw" not in repr(s)


@pytest.mark.parametrize(
    "toml",
    [
        "crl_validity_hours = -5",
        'crl_validity_hours = "abc"',
        "crl_validity_hours = true",
        '[pki]\npolicy_oids = "1.2.3"',
        '[pki]\npolicy_oids = ["not.an.oid"]',
        '[pki]\norganization = ""',
        'tsa_policy_oid = "x"',
        "pki = 3",
        "this is not toml",
    ],
)
def test_bad_values_are_refused_clearly(tmp_path: Path, toml: str) -> None:
    (tmp_path / "etrust.toml").write_text(toml, "utf-8")
    with pytest.raises(ConfigurationError):
        load_settings(tmp_path, env={})
