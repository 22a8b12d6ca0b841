"""MovieLens 100K as a Dataset: every rating is an interaction; users' features are demographics
(age bucket, gender, occupation, first character of the zip code); a movie's content is its title
words and its genres (as tags). The data may not be redistributed: it is read from a path."""

from __future__ import annotations

import io
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rec_models.config import PROJECT_ROOT
from rec_models.data.dataset import Dataset

DEFAULT_PATH = PROJECT_ROOT.parent / "shared" / "data" / "ml-100k"
DOWNLOAD_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
AGE_BUCKETS = [(0, 18, "<18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 50, "45-49"),
               (50, 56, "50-55"), (56, 200, "56+")]


@dataclass
class MovieLens:
    dataset: Dataset
    item_genres: list[set[str]]  # per dataset video row


def age_bucket(age: int) -> str:
    return next(label for lo, hi, label in AGE_BUCKETS if lo <= age < hi)


def download(target: Path) -> Path:
    """Fetch and unpack ml-100k from GroupLens into ``target`` (for users outside this project's machines)."""
    with urllib.request.urlopen(DOWNLOAD_URL, timeout=60) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    archive.extractall(target)
    return target / "ml-100k"


def load_movielens(path: Path = DEFAULT_PATH) -> MovieLens:
    path = Path(path)
    if not (path / "u.data").exists():
        raise FileNotFoundError(f"MovieLens 100K not found at {path} (expected u.data there); pass --data PATH or --download")
    ratings = np.loadtxt(path / "u.data", dtype=np.int64)
    user, item, ts = ratings[:, 0], ratings[:, 1], ratings[:, 3]
    genres = [line.split("|")[0] for line in (path / "u.genre").read_text(encoding="latin-1").splitlines() if line]
    video_text, item_genres, item_ids = {}, [], []
    for line in (path / "u.item").read_text(encoding="latin-1").splitlines():
        fields = line.split("|")
        item_id, flags = int(fields[0]), fields[5:]
        tags = [g for g, f in zip(genres, flags) if f == "1" and g != "unknown"]
        # The release year is content too (what is new when the ratings were collected matters).
        year = fields[2][-4:] if fields[2][-4:].isdigit() else ""
        content_tags = tags + ([f"year:{year}"] if year else [])
        video_text[item_id] = {"title": fields[1], "description": "", "tags": content_tags}
        item_ids.append(item_id)
        item_genres.append(set(tags))
    feature_names: list[str] = []
    index: dict[str, int] = {}
    rows, cols = [], []
    user_ids = []
    for line in (path / "u.user").read_text(encoding="latin-1").splitlines():
        uid, age, gender, occupation, zipcode = line.split("|")
        user_ids.append(int(uid))
        for feature in (f"age:{age_bucket(int(age))}", f"gender:{gender}", f"occupation:{occupation}",
                        f"zip:{zipcode[:1]}"):
            if feature not in index:
                index[feature] = len(feature_names)
                feature_names.append(feature)
            rows.append(len(user_ids) - 1)
            cols.append(index[feature])
    user_ids = np.array(user_ids)
    order = np.argsort(user_ids)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    dataset = Dataset.from_columns(
        user_ids=user_ids[order], video_ids=np.array(item_ids), video_active=np.ones(len(item_ids), dtype=bool),
        view_user_ids=user, view_video_ids=item, viewed_at=ts.astype(np.float64),
        # Each demographic feature weighs 1 after the log1p the Dataset applies to raw counts.
        user_feature_triples=(rank[np.array(rows)], np.array(cols), np.full(len(rows), np.e - 1)),
        user_feature_names=feature_names, end=float(ts.max()) + 1, video_text=video_text,
    )
    by_row = dict(zip(item_ids, item_genres))
    return MovieLens(dataset=dataset, item_genres=[by_row[int(v)] for v in dataset.video_ids])
