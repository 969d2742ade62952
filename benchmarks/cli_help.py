"""Wall time of `clipsteer --help` and `clipsteer CMD --help` for every command (target: < 1.5 s each on a
2-core machine), measured as fresh processes, the way a user meets them; the load average is printed
beside the figures.

    python benchmarks/cli_help.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from clipsteer.cli import COMMANDS

TARGET_S = 1.5


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from clipsteer.cli import main; main()", *args], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = [("(no command)", ["--help"])] + [(name, [*name.split(), "--help"]) for name in sorted(COMMANDS)]
    worst = 0.0
    for label, argv in rows:
        median = statistics.median(seconds(argv) for _ in range(args.repeats))
        worst = max(worst, median)
        print(f"{label:22s} {median:5.2f} s  ({median / TARGET_S:.2f} of the {TARGET_S} s target)")
    print(f"slowest: {worst:.2f} s; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
