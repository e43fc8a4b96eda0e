"""Write (or ``--check``) the index at the top of docs/experiments/README.md: one row per
experiment section (``## ``), linked, with the headline of each of its results (``### Result``).
The table is generated from the headings, so it cannot disagree with them.

    python docs/experiments/index.py           # rewrite the index in place
    python docs/experiments/index.py --check   # exit 1 if the index is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- index:start -->", "<!-- index:end -->"
INDEX_TITLE = "Index of the experiments"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def headings(text: str) -> list[tuple[int, str, str]]:
    """Every heading outside code fences: its level, title and GitHub anchor (a repeated anchor
    gets ``-1``, ``-2``, ... as GitHub numbers it)."""
    seen: Counter[str] = Counter()
    out: list[tuple[int, str, str]] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#{1,6}) (.*)$", line)
        if m is None:
            continue
        title = m.group(2).strip()
        base = slug(title)
        out.append((len(m.group(1)), title, base if not seen[base] else f"{base}-{seen[base]}"))
        seen[base] += 1
    return out


def index(text: str) -> str:
    """The index table for the README ``text`` (its own block and title left out)."""
    rows: list[tuple[str, list[str]]] = []
    for level, title, anchor in headings(text):
        link = f"[{_cell(title)}](#{anchor})"
        if level == 2 and title != INDEX_TITLE:
            rows.append((link, []))
        elif level == 3 and title.startswith("Result") and rows:
            rows[-1][1].append(link)
    out = ["| experiment | result |", "|---|---|"]
    out += [f"| {exp} | {'<br>'.join(res) if res else '(no separate result)'} |"
            for exp, res in rows]
    return "\n".join(out)


def render(text: str) -> str:
    """``text`` with the block between the markers replaced by the current index."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{index(head + tail)}\n{END}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the index is out of date")
    args = ap.parse_args()
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            sys.exit("docs/experiments/README.md: the index is out of date; "
                     "run python docs/experiments/index.py")
        return
    README.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
