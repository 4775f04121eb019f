#!/usr/bin/env python3
"""Builds a wire-copy set from a labelled headline file: the headlines of some
days, plus syndicated copies of a random share of them, edited the way outlets
edit wire copy (publisher suffixes, boilerplate prefixes, case, quotes and
apostrophes, HTML entities, truncation, a dropped article).

    eval/wire_copies.py GOLD OUT.jsonl [--from 2014-05-01] [--until 2014-05-08]
                        [--share 0.3] [--seed 1]

Every output row keeps the source row's fields; originals that got copies and
their copies share a `dup` label (the original's id), every other row has
`dup: null`. Standard library only.
"""
import argparse
import gzip
import io
import json
import random
import shutil
import subprocess
import sys

OUTLETS = ["Reuters", "Yahoo News", "ABC News", "The Seattle Times", "KCTV5", "WNCN", "Bangkok Post",
           "Sydney Morning Herald", "NDTV", "Fox News"]


def open_text(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if path.endswith(".zst"):
        if not shutil.which("zstd"):
            sys.exit("wire_copies.py: reading .zst needs the zstd tool")
        proc = subprocess.Popen(["zstd", "-dc", "--", path], stdout=subprocess.PIPE)
        return io.TextIOWrapper(proc.stdout, encoding="utf-8")
    return open(path, encoding="utf-8")


def edits(text, rng):
    """A few realistic edits of one wire headline; each returns a new text."""
    words = text.split()
    outlet = rng.choice(OUTLETS)
    options = [
        lambda: f"{text} - {outlet}",
        lambda: f"{text} | {outlet}",
        lambda: f"{text} \u2013 {outlet}",
        lambda: text.upper(),
        lambda: text.lower(),
        lambda: text.replace("'", "\u2019").replace('"', "\u201c"),
        lambda: text.replace("'s ", "s "),
        lambda: text.replace("&", "&amp;").replace("'", "&#39;"),
        lambda: f"UPDATE {rng.randint(1, 3)}-{text}",
        lambda: f"EXCLUSIVE: {text}",
        lambda: f"WATCH: {text}",
        lambda: " ".join(words[: max(6, len(words) - rng.randint(1, 3))]) + " ...",
        lambda: " ".join(w for w in words if w.lower() not in ("the", "a", "an")),
        lambda: "  ".join(words),
    ]
    return [rng.choice(options)() for _ in range(rng.randint(1, 4))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gold")
    ap.add_argument("out")
    ap.add_argument("--from", dest="start", default="2014-05-01")
    ap.add_argument("--until", default="2014-05-08")
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    rows = []
    with open_text(a.gold) as fh:
        for line in fh:
            row = json.loads(line)
            day = (row.get("published_at") or "")[:10]
            if a.start <= day < a.until:
                rows.append(row)
    out = []
    copies = 0
    for row in rows:
        row = dict(row, dup=None)
        out.append(row)
        if len(row["text"].split()) < 6 or rng.random() >= a.share:
            continue
        row["dup"] = row["id"]
        for k, text in enumerate(edits(row["text"], rng)):
            copy = dict(row, id=f"wc-{row['id']}-{k}", text=text, source=rng.choice(OUTLETS))
            out.append(copy)
            copies += 1
    with open(a.out, "w", encoding="utf-8") as fh:
        for row in out:
            fh.write(json.dumps(row) + "\n")
    print(f"{len(rows)} headlines, {copies} wire copies, {len(out)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
