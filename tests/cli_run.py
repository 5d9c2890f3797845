"""Running the command line from a test: exit code, stdout and stderr of one command."""

from __future__ import annotations

import pytest

from etrust.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err
