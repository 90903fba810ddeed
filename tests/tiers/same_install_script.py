#!/usr/bin/env python3
"""Whether two install scripts written by pgrx hold the same objects: pgrx orders its blocks
("connected objects") by a dependency graph whose ties fall differently from one build to the
next, so the blocks are compared as a sorted list. Usage: same_install_script.py BUILT FROZEN
(exit 1 and a unified diff of the sorted blocks when they differ)."""
import difflib
import sys

MARK = "/* <begin connected objects> */"


def blocks(path):
    with open(path, encoding="utf-8") as f:
        return sorted(b.strip() for b in f.read().split(MARK) if b.strip())


built, frozen = blocks(sys.argv[1]), blocks(sys.argv[2])
if built != frozen:
    sys.stdout.writelines(difflib.unified_diff(
        "\n\n".join(frozen).splitlines(True), "\n\n".join(built).splitlines(True), sys.argv[2], sys.argv[1]))
    sys.exit(1)
