"""Where a device PIN comes from: an environment variable, an owner-only file, or a prompt.

RFC 7512 query attributes name it: ``pin-source=env:NAME``, ``pin-source=file:/path`` (or a
bare path), ``pin-value=...`` (discouraged: it ends up in shell history and process lists).
Without any of them the PIN is read from ``default_env`` or, at a terminal, prompted for. A
PIN is never logged and never stored; errors name where it came from, never what it is.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from trust.errors import ConfigurationError
from trust.keys import KeyUri


def resolve_pin(
    uri: KeyUri,
    *,
    default_env: str,
    environ: Mapping[str, str] | None = None,
    prompt: str = "PIN: ",
) -> str:
    env = os.environ if environ is None else environ
    if "pin-value" in uri.query:
        return uri.query["pin-value"]
    source = uri.query.get("pin-source")
    if source is not None:
        if source.startswith("env:"):
            name = source[4:]
            if name not in env:
                raise ConfigurationError(f"the PIN variable {name} is not set")
            return env[name]
        return _read_pin_file(Path(source.removeprefix("file:")))
    if default_env in env:
        return env[default_env]
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise ConfigurationError(
        f"no PIN: set {default_env}, or add pin-source=file:PATH or pin-source=env:NAME to the URI"
    )


def _read_pin_file(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigurationError(f"PIN file {path} cannot be read: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or st.st_uid != os.getuid():
        raise ConfigurationError(
            f"PIN file {path} must be owned by this user and readable by it alone (chmod 600 {path})"
        )
    try:
        return path.read_text("utf-8").strip("\r\n")
    except (OSError, UnicodeDecodeError):  # never echo what the file holds
        raise ConfigurationError(f"PIN file {path} is not a readable UTF-8 text file") from None
