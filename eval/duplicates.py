#!/usr/bin/env python3
"""Scores the duplicate tiers of `headline-dedup eval --assignments-out`.

    eval/duplicates.py GOLD ASSIGNMENTS.jsonl

For the headlines answered EXACT_DUPLICATE or NEAR_DUPLICATE, precision is
the share whose matched headline is in the same gold story; where the gold
file has `dup` labels (eval/wire_copies.py), also the share whose matched
headline is a copy of the same original, and the recall of the copies (in
each group of copies of one original, all but the first to arrive should get
one of the two tiers). Standard library only.
"""
import json
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from wire_copies import open_text  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gold = {}
    with open_text(sys.argv[1]) as fh:
        for line in fh:
            row = json.loads(line)
            gold[row["id"]] = (row.get("story"), row.get("dup"))
    answers = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
    for kind in ("exact_duplicate", "near_duplicate"):
        hits = [a for a in answers if a["kind"] == kind]
        same_story = sum(1 for a in hits if gold[a["id"]][0] == gold[a["matched"]][0])
        labelled = [a for a in hits if gold[a["id"]][1] is not None and gold[a["matched"]][1] is not None]
        same_dup = sum(1 for a in labelled if gold[a["id"]][1] == gold[a["matched"]][1])
        line = f"{kind:16s} answers {len(hits):6d}  precision (same story) {same_story / max(1, len(hits)):.4f}"
        if labelled:
            line += f"  precision (same wire original) {same_dup / len(labelled):.4f} of {len(labelled)}"
        print(line)
    tiers = ("exact_duplicate", "near_duplicate")
    both = [a for a in answers if a["kind"] in tiers]
    correct = sum(1 for a in both if gold[a["id"]][0] == gold[a["matched"]][0])
    print(f"{'exact+near':16s} answers {len(both):6d}  precision (same story) {correct / max(1, len(both)):.4f}")
    groups = {}
    for a in answers:
        dup = gold[a["id"]][1]
        if dup is not None:
            size, hits = groups.get(dup, (0, 0))
            groups[dup] = (size + 1, hits + (a["kind"] in tiers))
    expected = sum(size - 1 for size, _ in groups.values())
    if expected:
        # In a group of n copies of one original, all but the first to arrive should be duplicates.
        found = sum(min(hits, size - 1) for size, hits in groups.values())
        print(f"wire copies      {expected:6d}  recall (exact or near) {found / expected:.4f}")


if __name__ == "__main__":
    main()
