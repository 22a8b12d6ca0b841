"""Arrays saved in the narrowest integer type that holds their values, and read back in the type they
were saved from: a run folder's ids, days and timestamps mostly fit in 32 bits or fewer, and int64 on
disk doubled the folder (lossless: a value that does not fit keeps its type)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_DTYPES = "__dtypes__"  # member holding each array's saved-from dtype (JSON, as bytes)
_NARROWER = (np.int8, np.int16, np.int32)


def narrowest(array: np.ndarray) -> np.ndarray:
    """``array`` in the narrowest signed integer type holding its values; other arrays as they are."""
    if array.dtype.kind not in "iu" or array.size == 0 or array.dtype.itemsize <= 1:
        return array
    low, high = int(array.min()), int(array.max())
    for dtype in _NARROWER:
        info = np.iinfo(dtype)
        if np.dtype(dtype).itemsize >= array.dtype.itemsize:
            break
        if info.min <= low and high <= info.max:
            return array.astype(dtype)
    return array


def save_packed(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez``, with every integer array narrowed (``load_packed`` widens them back)."""
    dtypes = {name: np.asarray(a).dtype.str for name, a in arrays.items()}
    packed = {name: narrowest(np.asarray(a)) for name, a in arrays.items()}
    np.savez(path, **packed, **{_DTYPES: np.frombuffer(json.dumps(dtypes).encode(), dtype=np.uint8)})


def load_packed(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``save_packed`` (or a plain ``np.savez``) file, each in the type it was saved from."""
    with np.load(path, allow_pickle=False) as arrays:
        dtypes = json.loads(arrays[_DTYPES].tobytes()) if _DTYPES in arrays.files else {}
        return {name: arrays[name].astype(dtypes[name], copy=False) if name in dtypes else arrays[name]
                for name in arrays.files if name != _DTYPES}
