"""Clusters a headline file with the Python alternatives and scores them.

    compare.py TOOL GOLD.jsonl MINILM_DIR M2V_DIR THRESHOLDS OUT.pred

TOOL is one of:
  semhash   SemHash self_deduplicate with a model2vec model (M2V_DIR): every
            headline it filters joins the headline it is a duplicate of.
  minhash   datasketch MinHash LSH over the lower-cased words (128
            permutations): connected components of the pairs LSH returns.
  minilm    sentence-transformers all-MiniLM-L6-v2 (MINILM_DIR) and
            threshold clustering: connected components of the pairs whose
            cosine is at least the threshold (exact, blockwise).

For each threshold T in THRESHOLDS (comma-separated) it prints one line:
    TOOL threshold=T headlines=N seconds=S headlines_per_s=R
and writes the predictions to OUT.T ({"id","cluster"} lines for score.py).
Model loading is not timed; the embedding, indexing and clustering are.
"""

import json
import sys
import time

import numpy as np


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


class UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def labels(self):
        return [self.find(i) for i in range(len(self.parent))]


def semhash_clusters(texts, model, threshold):
    from semhash import SemHash

    records = [{"i": str(i), "text": t} for i, t in enumerate(texts)]
    index = SemHash.from_records(records=records, columns=["text"], model=model)
    result = index.self_deduplicate(threshold=threshold)
    uf = UnionFind(len(texts))
    for filtered in result.filtered:
        uf.union(int(filtered.record["i"]), int(filtered.duplicate_of["i"]))
    return uf.labels()


def minhash_clusters(texts, threshold):
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    hashes = []
    for i, text in enumerate(texts):
        shingles = set(text.lower().split())
        m = MinHash(num_perm=128)
        for s in shingles:
            m.update(s.encode("utf8"))
        lsh.insert(str(i), m)
        hashes.append(m)
    uf = UnionFind(len(texts))
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            uf.union(i, int(j))
    return uf.labels()


def minilm_embed(texts, model):
    return model.encode(texts, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)


def threshold_clusters(vectors, threshold, block=2048):
    uf = UnionFind(len(vectors))
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block] @ vectors.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows, cols):
            if start + r < c:
                uf.union(start + r, c)
    return uf.labels()


def main():
    tool, gold, minilm_dir, m2v_dir, thresholds, out = sys.argv[1:7]
    rows = read(gold)
    texts = [r["text"] for r in rows]
    if tool == "semhash":
        from model2vec import StaticModel

        model = StaticModel.from_pretrained(m2v_dir)
    elif tool == "minilm":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(minilm_dir, device="cpu")
        started = time.perf_counter()
        vectors = minilm_embed(texts, model)
        embed_seconds = time.perf_counter() - started
    for threshold in [float(t) for t in thresholds.split(",")]:
        started = time.perf_counter()
        if tool == "semhash":
            labels = semhash_clusters(texts, model, threshold)
        elif tool == "minhash":
            labels = minhash_clusters(texts, threshold)
        elif tool == "minilm":
            labels = threshold_clusters(vectors, threshold)
        else:
            raise SystemExit(f"unknown tool {tool}")
        seconds = time.perf_counter() - started
        if tool == "minilm":
            seconds += embed_seconds
        print(
            f"{tool} threshold={threshold} headlines={len(texts)} seconds={seconds:.1f} "
            f"headlines_per_s={len(texts) / seconds:.0f}",
            flush=True,
        )
        with open(f"{out}.{threshold}", "w") as f:
            for row, label in zip(rows, labels):
                f.write(json.dumps({"id": row["id"], "cluster": f"c{label}"}) + "\n")


if __name__ == "__main__":
    main()
