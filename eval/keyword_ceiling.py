"""Upper bounds for the UCI keyword feeds: all-MiniLM-L6-v2 (the transformer)
and batch average-linkage clustering of each day's headlines, with the
threshold chosen on the gold labels.

    keyword_ceiling.py SCORE_PY FEEDS_DIR MINILM_DIR

FEEDS_DIR holds the feeds that make_keyword_feeds.py cuts (eval/suite.py
leaves them in target/suite/keyword-feeds). Run it with the virtual
environment of benches/compare.sh (target/compare/venv, with the model in
target/compare/minilm). Each day is clustered alone, so no story can span
two days (as in the UCI labels, and unlike real coverage), the whole day is
in hand, and the cut sees the answers: each figure is a ceiling for the
representation, not a method. It prints, for each feed, the B-cubed F1 at
every threshold; then, over the feeds, the mean at the best single threshold
and the mean of each feed's best.
"""

import collections
import json
import os
import sys

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sentence_transformers import SentenceTransformer

from stc_ceiling import load_score

THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)


def day_clusters(vectors, days, threshold):
    """Average linkage under cosine distance, cut at 1 - threshold, within each day."""
    by_day = collections.defaultdict(list)
    for i, day in enumerate(days):
        by_day[day].append(i)
    labels = [None] * len(days)
    for day, members in by_day.items():
        if len(members) == 1:
            labels[members[0]] = (day, 0)
            continue
        tree = linkage(vectors[members], "average", metric="cosine")
        for i, label in zip(members, fcluster(tree, 1 - threshold, "distance")):
            labels[i] = (day, int(label))
    return labels


def main():
    score_py, feeds_dir, minilm_dir = sys.argv[1:4]
    score = load_score(score_py)
    model = SentenceTransformer(minilm_dir, device="cpu")
    table = {}
    for name in sorted(os.listdir(feeds_dir)):
        rows = [json.loads(line) for line in open(os.path.join(feeds_dir, name)) if line.strip()]
        vectors = model.encode([r["text"] for r in rows], batch_size=128, normalize_embeddings=True)
        days = [r["published_at"][:10] for r in rows]
        gold = [r["story"] for r in rows]
        table[name] = [
            score.score_labels(gold, day_clusters(vectors, days, t))["bcubed_f1"] for t in THRESHOLDS
        ]
        print("%-24s %s" % (name, " ".join("%.3f" % f for f in table[name])), flush=True)
    means = np.mean(list(table.values()), axis=0)
    best = int(np.argmax(means))
    print("thresholds               %s" % " ".join("%.3f" % t for t in THRESHOLDS))
    print("mean at the best single threshold (%.2f): %.3f" % (THRESHOLDS[best], means[best]))
    print("mean of each feed's best threshold: %.3f" % np.mean([max(v) for v in table.values()]))


if __name__ == "__main__":
    main()
