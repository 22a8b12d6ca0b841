"""Content tokens of a video (title, description, tags) as a bag of words, the item tower's input."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
from scipy import sparse

_WORD = re.compile(r"[a-z][a-z0-9]+")
STOPWORDS = frozenset(
    "a an and are as at be by for from how in into is it its of on or the to with about your you this that "
    "video videos new best top live daily guide ultimate".split()
)
TAG_WEIGHT = 2.0  # a tag is a deliberate label: worth more than a word of the description


def video_tokens(title: str, description: str, tags: list[str]) -> Counter:
    words = Counter(w for w in _WORD.findall(f"{title} {description}".lower()) if w not in STOPWORDS)
    for tag in tags or []:
        tag = tag.strip().lower()
        if tag:
            words[f"tag:{tag}"] += TAG_WEIGHT
    return words


def content_bags(video_ids: np.ndarray, video_text: dict[int, dict], min_videos: int = 2,
                 max_tokens: int = 50_000) -> tuple[sparse.csr_matrix, list[str]]:
    """videos x tokens matrix (log1p counts) over tokens found in at least ``min_videos`` videos."""
    per_video = [video_tokens(**_fields(video_text.get(int(v)))) for v in video_ids]
    df = Counter(t for bag in per_video for t in bag)
    vocab = sorted((t for t, n in df.items() if n >= min_videos), key=lambda t: (-df[t], t))[:max_tokens]
    vocab.sort()
    index = {t: i for i, t in enumerate(vocab)}
    rows, cols, vals = [], [], []
    for r, bag in enumerate(per_video):
        for token, count in bag.items():
            if token in index:
                rows.append(r)
                cols.append(index[token])
                vals.append(np.log1p(count))
    matrix = sparse.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(len(video_ids), len(vocab)))
    return matrix, vocab


def _fields(text: dict | None) -> dict:
    text = text or {}
    return {"title": text.get("title", ""), "description": text.get("description", ""), "tags": text.get("tags", [])}
