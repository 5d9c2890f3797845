"""What every command shares: who runs it, reading inputs and writing outputs safely."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path
from typing import Any

from trust.errors import MalformedInputError


def actor() -> str:
    """Who runs this command, as the audit log names them."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (some containers)
        return f"cli:uid-{os.getuid()}"


def read_file(path: str, limit: int | None = None) -> bytes:
    try:
        file = Path(path)
        if limit is not None and file.stat().st_size > limit:
            raise MalformedInputError(f"{path} is larger than {limit} bytes")
        return file.read_bytes()
    except OSError as exc:
        raise MalformedInputError(f"cannot read {path}: {exc.strerror}") from exc


def write_new(path: str, data: bytes) -> None:
    """Write ``data`` to a new file (never over an existing one: a signed original is precious)."""
    try:
        with open(path, "xb") as out:
            out.write(data)
    except FileExistsError:
        raise MalformedInputError(f"{path} exists; give a new file name") from None
    except OSError as exc:
        raise MalformedInputError(f"cannot write {path}: {exc.strerror}") from exc


def print_result(args: argparse.Namespace, data: Any, text: str) -> None:
    """``data`` as JSON with ``--json``, else ``text`` for people."""
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(text)
