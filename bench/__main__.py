"""Run the benchmarks: ``python -m bench [crypto] [issue] [chain] [ocsp] [backends] [signing]
[licenses] [codes] [--seconds N]``."""

from __future__ import annotations

import argparse
import importlib
import os
import platform

SECTIONS = ("crypto", "issue", "chain", "ocsp", "backends", "signing", "licenses", "codes")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(
            f"unknown sections {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    print(f"# {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'measure':<44}{'ours':>12} {'reference':>10}  {'ratio':>7}")
    for name in args.sections or SECTIONS:
        module = importlib.import_module(f"bench.{name}")
        for line in module.run(args.seconds):
            print(line, flush=True)


if __name__ == "__main__":
    main()
