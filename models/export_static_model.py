"""Exports a distilled model2vec model as the compact files the service loads.

Input: a directory written by model2vec's `StaticModel.save_pretrained`.
Output directory:
  vocab.txt            one WordPiece token per line; the line number is the token id
  vectors.safetensors  `vectors` (int8, tokens x dim) and `scales` (float32, tokens):
                       token vector = vectors[i] * scales[i]
"""

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def main(src: str, dst: str) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    dst_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = json.loads((src_dir / "tokenizer.json").read_text())
    model = tokenizer["model"]
    assert model["type"] == "WordPiece", model["type"]
    assert model["continuing_subword_prefix"] == "##"
    vocab = sorted(model["vocab"].items(), key=lambda item: item[1])
    assert [i for _, i in vocab] == list(range(len(vocab))), "token ids must be dense"
    embeddings = load_file(str(src_dir / "model.safetensors"))["embeddings"].astype(np.float32)
    assert embeddings.shape[0] == len(vocab), (embeddings.shape, len(vocab))

    scales = np.abs(embeddings).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    quantized = np.clip(np.rint(embeddings / scales[:, None]), -127, 127).astype(np.int8)
    save_file(
        {"vectors": quantized, "scales": scales.astype(np.float32)},
        str(dst_dir / "vectors.safetensors"),
    )
    (dst_dir / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab))
    error = np.abs(quantized.astype(np.float32) * scales[:, None] - embeddings).max()
    print(f"tokens={len(vocab)} dim={embeddings.shape[1]} max_abs_error={error:.5f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
