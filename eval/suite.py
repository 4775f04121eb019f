#!/usr/bin/env python3
"""Runs headline-dedup's in-process evaluation on every kind of feed and
prints one table: the settings are chosen on the development parts, and
the held-out parts are reported beside them.

    eval/suite.py [--bin target/release/headline-dedup] [--eval ../shared/eval]
                  [--work target/suite] [--only NAME,...] [--json]
                  [--set key=value ...]

Sets (development unless marked held-out):
  uci-dev       UCI News Aggregator, March-April, shuffled within days
  uci-may       the same, May (held-out)
  uci-keywords  keyword feeds cut from March-April (make_keyword_feeds.py):
                mean and worst B-cubed F1 over the feeds
  keyed         keyed-feed/dev.jsonl (a feed keyed on one country, real times):
                story B-cubed and pairwise F1, and the duplicate links' pairwise
                F1 (EXACT and NEAR answers joined into groups, against `dup`)
  lookalikes    eval/lookalikes/dev.jsonl (look-alike stories within hours):
                story pairwise F1, and EXACT/NEAR answers whose matched headline
                is another story's (false duplicates)
  stc           GoogleNews-STC titles (no times)
  wire-dev      wire copies of April 1-7: EXACT/NEAR precision and recall
  wire-may      the same for May 1-7 (held-out)
  keyword-appended  the first 15,000 March headlines clustered as they are and
                with one word ("Japan") appended to every one: the B-cubed
                agreement of the two partitions (the first taken as gold)

The UCI labels split stories by day: a headline republished word for word on
a later day is another story to them, and a copy the engine joins to its
story days later counts as an error. Beside each UCI figure the suite
reports it again with those late copies left unscored (`..._late_unscored`:
rows whose text, lowercased with punctuation dropped, appeared on an earlier
day), and for the wire sets the precision of the answers matched within the
day (`precision_same_day`).

Every number comes from score.py (standard library; the binary does the
clustering). Intermediate files go to --work.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


class Suite:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.eval_dir = os.path.abspath(args.eval)
        self.work = os.path.abspath(args.work)
        self.settings = [x for s in args.set for x in ("--set", s)]
        os.makedirs(self.work, exist_ok=True)
        self.score_py = os.path.join(self.eval_dir, "score.py")
        self.uci = os.path.join(self.eval_dir, "uci-news-aggregator", "dev.jsonl.zst")

    def path(self, name):
        return os.path.join(self.work, name)

    def eval(self, gold, name, order="file", extra=(), assignments=False):
        cmd = [self.bin, "eval", gold, "--order", order, "--out", self.path(name + ".pred")]
        cmd += list(extra) + self.settings
        if assignments:
            cmd += ["--assignments-out", self.path(name + ".assign")]
        started = time.time()
        run(cmd)
        return time.time() - started

    def score(self, gold, pred, label="story"):
        out = run([sys.executable, self.score_py, gold, pred, "--label", label, "--json"])
        return json.loads(out)

    def late_unscored(self, gold, name):
        """`gold` with the rows that repeat an earlier day's text unscored."""
        out = self.path(name + ".late-unscored.gold")
        first_day = {}
        with open(gold, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
            for line in src:
                row = json.loads(line)
                day = (row.get("published_at") or "")[:10]
                text = re.sub(r"\W+", " ", row["text"].lower()).strip()
                if first_day.setdefault(text, day) != day:
                    row["story"] = None
                dst.write(json.dumps(row) + "\n")
        return out

    def uci_gold(self, name, extra):
        """The UCI rows of a period, in the order eval replays them."""
        gold = self.path(name + ".gold")
        if not os.path.exists(gold):
            run([self.bin, "eval", self.uci, "--order", "shuffle-day", "--out", self.path(name + ".warm"),
                 "--gold-out", gold] + list(extra))
        return gold

    def uci_period(self, name, extra):
        gold = self.uci_gold(name, extra)
        seconds = self.eval(gold, name, order="shuffle-day")
        s = self.score(gold, self.path(name + ".pred"))
        late = self.score(self.late_unscored(gold, name), self.path(name + ".pred"))
        return {"b3_f1": s["bcubed_f1"], "pair_f1": s["pairwise_f1"], "b3_f1_late_unscored": late["bcubed_f1"],
                "seconds": round(seconds, 1)}

    def uci_dev(self):
        return self.uci_period("uci-dev", ["--until", "2014-05-01"])

    def uci_may(self):
        return self.uci_period("uci-may", ["--from", "2014-05-01"])

    def uci_keywords(self):
        gold = self.uci_gold("uci-dev", ["--until", "2014-05-01"])
        feeds = self.path("keyword-feeds")
        if not os.path.isdir(feeds):
            run([sys.executable, os.path.join(self.eval_dir, "uci-news-aggregator", "make_keyword_feeds.py"),
                 gold, feeds])
        scores, late = {}, {}
        for name in sorted(os.listdir(feeds)):
            feed = os.path.join(feeds, name)
            key = name.removeprefix("feed-").removesuffix(".jsonl")
            pred = self.path("kw-" + key + ".pred")
            self.eval(feed, "kw-" + key, order="shuffle-day")
            scores[key] = round(self.score(feed, pred)["bcubed_f1"], 4)
            late[key] = round(self.score(self.late_unscored(feed, "kw-" + key), pred)["bcubed_f1"], 4)
        worst = min(scores, key=scores.get)
        worst_late = min(late, key=late.get)
        return {"mean_b3_f1": sum(scores.values()) / len(scores), "worst": f"{worst} {scores[worst]:.3f}",
                "mean_late_unscored": sum(late.values()) / len(late),
                "worst_late_unscored": f"{worst_late} {late[worst_late]:.3f}", "feeds": scores}

    def dup_groups(self, name):
        """Joins each EXACT/NEAR answer to its matched headline: predicted
        copy groups, for score.py --label dup."""
        parent = {}

        def find(x):
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        answers = [json.loads(line) for line in open(self.path(name + ".assign"), encoding="utf-8")]
        for a in answers:
            find(a["id"])
            if a["kind"] in ("exact_duplicate", "near_duplicate") and a["matched"]:
                parent[find(a["id"])] = find(a["matched"])
        out = self.path(name + ".dup.pred")
        with open(out, "w", encoding="utf-8") as fh:
            for a in answers:
                fh.write(json.dumps({"id": a["id"], "cluster": find(a["id"])}) + "\n")
        return out, answers

    def keyed(self):
        gold = os.path.join(self.eval_dir, "keyed-feed", "dev.jsonl")
        self.eval(gold, "keyed", assignments=True)
        s = self.score(gold, self.path("keyed.pred"))
        dup_pred, _ = self.dup_groups("keyed")
        d = self.score(gold, dup_pred, label="dup")
        return {"b3_f1": s["bcubed_f1"], "pair_f1": s["pairwise_f1"], "dup_pair_f1": d["pairwise_f1"]}

    def lookalikes(self):
        gold = os.path.join(HERE, "lookalikes", "dev.jsonl")
        self.eval(gold, "lookalikes", assignments=True)
        s = self.score(gold, self.path("lookalikes.pred"))
        story = {json.loads(line)["id"]: json.loads(line)["story"] for line in open(gold, encoding="utf-8")}
        _, answers = self.dup_groups("lookalikes")
        false = [a["id"] for a in answers
                 if a["kind"] in ("exact_duplicate", "near_duplicate") and story[a["id"]] != story[a["matched"]]]
        return {"b3_f1": s["bcubed_f1"], "pair_f1": s["pairwise_f1"], "false_duplicates": len(false)}

    def stc(self):
        gold = os.path.join(self.eval_dir, "googlenews-stc", "headlines.jsonl.gz")
        self.eval(gold, "stc")
        s = self.score(gold, self.path("stc.pred"))
        return {"b3_f1": s["bcubed_f1"], "pair_f1": s["pairwise_f1"]}

    def wire(self, name, start, until):
        gold = self.path(name + ".jsonl")
        if not os.path.exists(gold):
            run([sys.executable, os.path.join(HERE, "wire_copies.py"), self.uci, gold, "--from", start,
                 "--until", until])
        self.eval(gold, name, order="shuffle-day", assignments=True)
        out = run([sys.executable, os.path.join(HERE, "duplicates.py"), gold, self.path(name + ".assign")])
        rows = {}
        with open(gold, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                rows[row["id"]] = (row["story"], (row.get("published_at") or "")[:10])
        answers = [json.loads(line) for line in open(self.path(name + ".assign"), encoding="utf-8")]
        same_day = [a for a in answers if a["kind"] in ("exact_duplicate", "near_duplicate")
                    and rows[a["id"]][1] == rows[a["matched"]][1]]
        result = {"precision_same_day": sum(rows[a["id"]][0] == rows[a["matched"]][0] for a in same_day)
                  / max(1, len(same_day))}
        for line in out.splitlines():
            words = line.split()
            if words[0] == "exact+near":
                result["precision"] = float(words[words.index("story)") + 1])
            elif words[0] == "wire":
                result["recall"] = float(words[-1])
        return result

    def keyword_appended(self, word="Japan", rows=15000):
        gold = self.uci_gold("uci-dev", ["--until", "2014-05-01"])
        plain, appended = self.path("kw-appended-plain.jsonl"), self.path("kw-appended.jsonl")
        with open(gold, encoding="utf-8") as src, open(plain, "w", encoding="utf-8") as a, \
                open(appended, "w", encoding="utf-8") as b:
            for _, line in zip(range(rows), src):
                row = json.loads(line)
                a.write(json.dumps(row) + "\n")
                row["text"] = row["text"] + " " + word
                b.write(json.dumps(row) + "\n")
        self.eval(plain, "kw-appended-plain", order="shuffle-day")
        self.eval(appended, "kw-appended", order="shuffle-day")
        first = self.path("kw-appended-first.gold")
        with open(self.path("kw-appended-plain.pred"), encoding="utf-8") as src, \
                open(first, "w", encoding="utf-8") as dst:
            for line in src:
                row = json.loads(line)
                dst.write(json.dumps({"id": row["id"], "story": row["cluster"]}) + "\n")
        s = self.score(first, self.path("kw-appended.pred"))
        return {"b3_agreement": s["bcubed_f1"], "pair_agreement": s["pairwise_f1"]}

    def wire_dev(self):
        return self.wire("wire-dev", "2014-04-01", "2014-04-08")

    def wire_may(self):
        return self.wire("wire-may", "2014-05-01", "2014-05-08")


SETS = ["uci-dev", "uci-may", "uci-keywords", "keyed", "lookalikes", "stc", "wire-dev", "wire-may",
        "keyword-appended"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "headline-dedup"))
    ap.add_argument("--eval", default=os.path.join(ROOT, "..", "shared", "eval"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "suite"))
    ap.add_argument("--only", default=",".join(SETS))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    suite = Suite(args)
    results = {}
    for name in args.only.split(","):
        results[name] = getattr(suite, name.replace("-", "_"))()
        if not args.json:
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results[name].items() if k != "feeds"}
            print(f"{name:13s} {json.dumps(shown)}", flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
