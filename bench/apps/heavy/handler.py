"""A handler whose module init costs about 300 ms of real CPU work, like an app
that imports its libraries and loads a small model at import time: a dozen
stdlib modules the platform does not preload, then a deterministic "model"
(weights from a linear congruential generator, a few matrix-vector passes and
a hashed vocabulary). No sleeping: every millisecond is computed."""

import csv  # noqa: F401
import decimal  # noqa: F401
import difflib  # noqa: F401
import email.mime.multipart  # noqa: F401
import fractions  # noqa: F401
import hashlib
import http.client  # noqa: F401
import logging.handlers  # noqa: F401
import sqlite3  # noqa: F401
import statistics
import tarfile  # noqa: F401
import xml.dom.minidom  # noqa: F401
import zipfile  # noqa: F401

DIM = 256
PASSES = 28
VOCAB_SIZE = 250_000


def _load_model() -> tuple[list[float], dict[str, int], float]:
    seed = 12345
    weights = []
    for _ in range(DIM * DIM):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        weights.append(seed / 2**31 - 0.5)
    rows = [weights[i * DIM:(i + 1) * DIM] for i in range(DIM)]
    vec = [1.0] * DIM
    for _ in range(PASSES):
        vec = [sum(w * x for w, x in zip(row, vec, strict=True)) for row in rows]
        norm = max(abs(v) for v in vec) or 1.0
        vec = [v / norm for v in vec]
    vocab = {hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest(): i
             for i in range(VOCAB_SIZE)}
    bias = statistics.fmean(vec)
    return vec, vocab, bias


VEC, VOCAB, BIAS = _load_model()


def handler(event, context):
    params = event.get("queryStringParameters") or {}
    word = params.get("q", "")
    return {"dim": DIM, "known": word in VOCAB, "score": round(VEC[0] + BIAS, 6)}
