"""A home with security officers: their keys in the home's keystore, registered by the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from etrust.cli import main
from etrust.runtime import open_runtime
from etrust.settings import load_settings


def officer_home(
    home: Path,
    *,
    officers: Iterable[str] = ("zhang", "li"),
    register: Iterable[str] | None = None,
    dual_control: dict[str, int] | None = None,
) -> str:
    """Initialise ``home``, make a key ``officer-NAME`` per officer and register ``register``
    (all of them by default) with ``etrust officer add``; returns the home as a string."""
    home.mkdir(parents=True, exist_ok=True)
    if dual_control:
        lines = "".join(f'"{op}" = {n}\n' for op, n in dual_control.items())
        (home / "etrust.toml").write_text("[dual_control]\n" + lines, "utf-8")
    h = str(home)
    assert main(["--home", h, "init"]) == 0
    names = list(officers)
    rt = open_runtime(load_settings(home))
    try:
        for name in names:
            rt.keystore.generate(f"officer-{name}", "sm2")
    finally:
        rt.close()
    for name in names if register is None else register:
        key = ["--key-uri", f"soft:object=officer-{name}"]
        assert main(["--home", h, "officer", "add", name, *key]) == 0
    return h


def api_headers(home: Path, name: str, role: str, department: str | None = None) -> dict[str, str]:
    """Create an API client with ``etrust client create`` and return its bearer header."""
    out = StringIO()
    extra = ["--department", department] if department else []
    with redirect_stdout(out):
        args = ["--home", str(home), "client", "create", name, "--role", role, *extra, "--json"]
        assert main(args) == 0
    return {"Authorization": "Bearer " + json.loads(out.getvalue())["token"]}
