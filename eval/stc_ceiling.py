"""Upper bounds for GoogleNews-STC titles: batch average-linkage clustering
with the threshold (and the lexical weight) chosen on the gold labels.

    stc_ceiling.py SCORE_PY STC.jsonl.gz MINILM_DIR M2V_DIR

Run it with the virtual environment of benches/compare.sh, which has
sentence-transformers, model2vec, scikit-learn and scipy, and the two models
it prepares (target/compare/minilm, target/compare/m2v). Nothing here is
streaming and every choice sees the answers, so each row is a ceiling for its
representation, not a method: the engine has to do with one pass, no labels
and no corpus statistics known in advance.

Rows: all-MiniLM-L6-v2 (the transformer, ~10 ms per headline on a CPU core)
and its model2vec static distillation (the kind of table the service ships),
each alone and concatenated with TF-IDF word vectors fitted on the whole set
(SVD to 300 dimensions); last, MiniLM on title plus snippet, which the service
never sees.
"""

import gzip
import importlib.util
import json
import sys

import numpy as np
from model2vec import StaticModel
from scipy.cluster.hierarchy import fcluster, linkage
from sentence_transformers import SentenceTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

THRESHOLDS = np.arange(0.30, 1.0, 0.025)
LEXICAL_WEIGHTS = (0.3, 0.5, 0.7, 1.0)


def load_score(path):
    spec = importlib.util.spec_from_file_location("score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_cut(score, gold, vectors):
    """Average linkage under cosine distance; the best B-cubed F1 over THRESHOLDS."""
    # One title is empty after the set's preprocessing: keep its vector nonzero.
    vectors = vectors.copy()
    vectors[:, 0] += 1e-6
    tree = linkage(normalize(vectors), "average", metric="cosine")
    results = []
    for threshold in THRESHOLDS:
        labels = fcluster(tree, threshold, "distance")
        results.append((score.score_labels(gold, list(labels)), threshold))
    return max(results, key=lambda r: r[0]["bcubed_f1"])


def report(name, result):
    res, threshold = result
    print(
        "%-46s B-cubed P %.3f R %.3f F1 %.3f  pairwise F1 %.3f  ARI %.3f  (distance %.3f)"
        % (name, res["bcubed_precision"], res["bcubed_recall"], res["bcubed_f1"],
           res["pairwise_f1"], res["ari"], threshold),
        flush=True,
    )


def main():
    score_py, stc, minilm_dir, m2v_dir = sys.argv[1:5]
    score = load_score(score_py)
    rows = [json.loads(line) for line in gzip.open(stc, "rt")]
    gold = [row["story"] for row in rows]
    titles = [row["text"] for row in rows]

    minilm = SentenceTransformer(minilm_dir, device="cpu")
    embed = lambda texts: minilm.encode(texts, batch_size=128, normalize_embeddings=True)
    tfidf = TfidfVectorizer(sublinear_tf=True).fit_transform(titles)
    lexical = normalize(TruncatedSVD(300, random_state=0).fit_transform(tfidf))

    for name, semantic in (
        ("all-MiniLM-L6-v2", embed(titles)),
        ("model2vec distillation of it", StaticModel.from_pretrained(m2v_dir).encode(titles)),
    ):
        semantic = normalize(semantic)
        report(name, best_cut(score, gold, semantic))
        weighted = [
            (best_cut(score, gold, np.hstack([semantic, w * lexical])), w) for w in LEXICAL_WEIGHTS
        ]
        result, w = max(weighted, key=lambda r: r[0][0]["bcubed_f1"])
        report("%s + TF-IDF (w %.1f)" % (name, w), result)

    report("all-MiniLM-L6-v2, title + snippet", best_cut(
        score, gold, embed([row["text"] + " " + row["snippet"] for row in rows])))


if __name__ == "__main__":
    main()
