#!/usr/bin/env python3
"""Checks the retrieval-quality set of `strongroom bench knowledge`.

Every question's `expect` must occur (case-insensitive) in exactly one corpus file, inside one
line of that file's searchable text, so one passage can hold it whole (a note is printed when
it occurs more than once in that file):

- .txt  as it is;
- .md   with Markdown markup removed roughly as the indexer does (`**`, `*`, `_`
        emphasis, backticks, `#` heading marks, `[text](url)` -> `text`, list and
        quote markers);
- .csv  one line per row, `header: value; header: value`, empty values left out.

Also checks the shape of questions.json and the spread of questions over the corpus.
Standard library only. Exit status 0 when everything holds, 1 otherwise.

    python3 benches/knowledge/check.py [-v]
"""

import csv
import io
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
QUESTIONS = HERE / "questions.json"

# Least number of questions in all, and per kind of document.
MIN_TOTAL = 40
MIN_PER_KIND = {"reference": 20, "own": 15, "csv": 4}
MIN_WORDS, MAX_WORDS = 2, 8


def markdown_text(source: str) -> str:
    out = []
    for line in source.splitlines():
        line = re.sub(r"^\s{0,3}#{1,6}\s+", "", line)  # heading marks
        line = re.sub(r"\s+#+\s*$", "", line)  # closing heading marks
        line = re.sub(r"^\s*>\s?", "", line)  # block quotes
        line = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "- ", line)  # list items
        line = re.sub(r"^\s*\|?(?:\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$", "", line)  # table rule
        line = re.sub(r"^\s*\|\s*", "", line)  # leading table pipe
        line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)  # links and images
        line = line.replace("**", "").replace("__", "").replace("`", "")
        line = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"\1", line)  # *em*
        line = re.sub(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)", r"\1", line)  # _em_
        out.append(line)
    return "\n".join(out)


def csv_text(source: str) -> str:
    reader = csv.reader(io.StringIO(source))
    header = [h.strip() for h in next(reader)]
    lines = []
    for row in reader:
        fields = [f"{h}: {v.strip()}" for h, v in zip(header, row) if v.strip()]
        if fields:
            lines.append("; ".join(fields))
    return "\n".join(lines)


def searchable(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return markdown_text(text)
    if path.suffix == ".csv":
        return csv_text(text)
    return text


def kind(path: Path) -> str:
    if path.suffix == ".csv":
        return "csv"
    if path.name.startswith("trust-center-"):
        return "reference"
    return "own"


def squash(s: str) -> str:
    """Lower case, runs of blanks as one space (a line's text, never across lines)."""
    return re.sub(r"[ \t\u00a0]+", " ", s).strip().lower()


def main() -> int:
    verbose = "-v" in sys.argv[1:]
    files = sorted(p for p in CORPUS.iterdir() if p.suffix in {".txt", ".md", ".csv"})
    lines = {p: [squash(l) for l in searchable(p).splitlines()] for p in files}
    whole = {p: squash(" ".join(searchable(p).split())) for p in files}

    questions = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    problems = []
    notes = []  # allowed, but a phrase that occurs once is a sharper test
    if not isinstance(questions, list):
        print("questions.json: not a JSON array")
        return 1

    per_file = {p: 0 for p in files}
    per_kind = {k: 0 for k in MIN_PER_KIND}
    seen = set()
    for i, q in enumerate(questions, 1):
        where = f"#{i}"
        if not isinstance(q, dict) or set(q) != {"question", "expect"}:
            problems.append(f"{where}: want exactly the keys question and expect")
            continue
        question, expect = q["question"], q["expect"]
        if not (isinstance(question, str) and question.strip()):
            problems.append(f"{where}: empty question")
        if not (isinstance(expect, str) and expect.strip()):
            problems.append(f"{where}: empty expect")
            continue
        if question.strip().lower() in seen:
            problems.append(f"{where}: repeated question {question!r}")
        seen.add(question.strip().lower())
        words = [w for w in expect.split() if any(c.isalnum() for c in w)]
        if not MIN_WORDS <= len(words) <= MAX_WORDS:
            problems.append(f"{where}: expect {expect!r} has {len(words)} words")
        if any(m in expect for m in ("**", "`", "](")):
            problems.append(f"{where}: expect {expect!r} holds Markdown markup")

        needle = squash(expect)
        hits = {p: sum(l.count(needle) for l in lines[p]) for p in files}
        found = [p for p in files if hits[p]]
        if len(found) != 1:
            names = ", ".join(f"{p.name} ({hits[p]}x)" for p in found) or "no file"
            across = [p.name for p in files if needle in whole[p] and not hits[p]]
            extra = f"; only across a line break in {', '.join(across)}" if across else ""
            problems.append(f"{where}: expect {expect!r} found in {names}{extra}")
            continue
        p = found[0]
        per_file[p] += 1
        per_kind[kind(p)] += 1
        if hits[p] > 1:
            notes.append(f"{where}: expect {expect!r} occurs {hits[p]}x in {p.name}")
        if verbose:
            print(f"ok  {p.name:45} {expect!r}")

    if len(questions) < MIN_TOTAL:
        problems.append(f"{len(questions)} questions, want at least {MIN_TOTAL}")
    for k, least in MIN_PER_KIND.items():
        if per_kind[k] < least:
            problems.append(f"{per_kind[k]} questions on {k} documents, want {least}")
    for p in files:
        if per_file[p] == 0:
            problems.append(f"{p.name}: no question answered by it")

    print(f"{len(files)} corpus files, {len(questions)} questions")
    for p in files:
        print(f"  {per_file[p]:3}  {p.name}")
    print("  by kind: " + ", ".join(f"{k} {n}" for k, n in per_kind.items()))
    for msg in notes:
        print("note " + msg)
    for msg in problems:
        print("FAIL " + msg)
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print(f"OK: {len(questions)} of {len(questions)} expects found in exactly one file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
