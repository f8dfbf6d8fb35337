#!/usr/bin/env python3
"""Checks that the test suite provoked every error the server can answer.

The server's tests note each (status, code) they see in a ledger directory (one file per test
process, lines "<status> <code>"; see crates/server/tests/common/spec.rs). Every pair the API
guides list (docs/api.md's and docs/e2b.md's error tables, which tests keep equal to the
server's registry) must be in it, unless crates/server/tests/error-codes-not-provoked.txt says
why no test can provoke it. Usage: error-codes-check.py <ledger-dir>
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXEMPT = ROOT / "crates/server/tests/error-codes-not-provoked.txt"


def documented(doc: str) -> set[tuple[int, str]]:
    """The (status, code) pairs of the guide's `| status | codes |` table."""
    text = (ROOT / "docs" / doc).read_text()
    table = text[text.index("| status | codes |"):].splitlines()[2:]
    pairs = set()
    for line in table:
        if not line.startswith("|"):
            break
        cells = line.split("|")
        status = int(cells[1])
        # Parentheses explain a code; what is quoted there (a field, a language) is not one.
        for code in re.sub(r"\([^)]*\)", "", cells[2]).split("`")[1::2]:
            if re.fullmatch(r"[a-z_]+", code):
                pairs.add((status, code))
    return pairs


def main() -> int:
    ledger = pathlib.Path(sys.argv[1])
    registered = documented("api.md") | documented("e2b.md")
    seen = set()
    for f in ledger.glob("*"):
        for line in f.read_text().splitlines():
            status, code = line.split()
            seen.add((int(status), code))
    exempt = {}
    for line in EXEMPT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            status, code, reason = line.split(maxsplit=2)
            exempt[(int(status), code)] = reason
    show = lambda pairs: "\n".join(f"  {s} {c}" for s, c in sorted(pairs, key=lambda p: (p[1], p[0])))
    failed = False
    missing = registered - seen - exempt.keys()
    if missing:
        failed = True
        print(f"error codes no test provoked ({len(missing)}); add a test, or a reason to {EXEMPT.relative_to(ROOT)}:\n{show(missing)}")
    stale = exempt.keys() & seen
    if stale:
        failed = True
        print(f"error codes listed as not provoked that a test provoked; remove them from the list:\n{show(stale)}")
    unknown = seen - registered
    if unknown:
        failed = True
        print(f"error answers the guides do not list:\n{show(unknown)}")
    unknown_exempt = exempt.keys() - registered
    if unknown_exempt:
        failed = True
        print(f"{EXEMPT.relative_to(ROOT)} names pairs the guides do not list:\n{show(unknown_exempt)}")
    print(f"error codes: {len(registered)} (status, code) pairs registered, {len(seen & registered)} provoked by tests, {len(exempt)} not provokable from outside")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
