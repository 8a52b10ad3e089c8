"""Checker with the Toolathlon contract: exit 0 when every .tex and .bib file under paper/ matches the ground
truth (whitespace-insensitive, as Toolathlon's paper-checker compares), 1 otherwise."""

import argparse
import re
import sys
from pathlib import Path


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): re.sub(r"\s+", "", p.read_text(encoding="utf-8"))
            for p in sorted(root.rglob("*")) if p.suffix in (".tex", ".bib")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent_workspace", required=True)
    parser.add_argument("--groundtruth_workspace", required=True)
    parser.add_argument("--res_log_file")
    parser.add_argument("--launch_time")
    args = parser.parse_args()
    got = files(Path(args.agent_workspace) / "paper")
    want = files(Path(args.groundtruth_workspace) / "paper")
    if set(got) != set(want):
        print(f"file sets differ: missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}")
        return 1
    bad = [name for name in want if got[name] != want[name]]
    if bad:
        print(f"not as expected: {', '.join(bad)}")
        return 1
    print("all references resolve and nothing else changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
