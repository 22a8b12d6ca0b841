"""Where run folders live: a local path (the default), or an object store URL (``s3://bucket/prefix``)
that Celery workers on other machines read and write too.

Artifacts (a folder of files: the snapshot, the Dataset, a model, a checkpoint, a scored part) are
written into a local folder and committed whole. An object store has no atomic rename, so a commit
uploads the files and then its manifest (``_COMMITTED.json``, with a commit id): a reader that finds
no manifest sees no artifact, never part of one. Reads download committed files into a local cache
(per machine, reused while the commit id is unchanged; files stream in chunks, never whole into
memory). Credentials come from ``storage_options`` (the DAG fills them from an Airflow Connection) or
from the usual environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``) for the CLI; never from code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

MANIFEST = "_COMMITTED.json"


class RunStore(Protocol):
    def location(self, relative: str) -> str:
        """Where ``relative`` lives, for logs and XComs (a path or a URL)."""

    def staged(self, relative: str, *, keep: bool = False) -> contextlib.AbstractContextManager[Path]:
        """A local folder to write the artifact ``relative`` into, committed when the block ends without
        an error; ``keep``: it starts with the artifact's committed files (to add to them)."""

    def fetch(self, relative: str) -> Path:
        """A local folder holding exactly the committed artifacts under ``relative`` (it may not exist)."""

    def exists(self, relative: str) -> bool:
        """Whether an artifact or a record is committed at ``relative``."""

    def write_text(self, relative: str, text: str) -> None: ...

    def read_text(self, relative: str) -> str:
        """The record at ``relative``; FileNotFoundError when there is none."""

    def remove(self, relative: str) -> None: ...

    def children(self, relative: str) -> list[str]:
        """Names directly under ``relative`` (folders and records), sorted."""

    def bytes_under(self, relative: str) -> int:
        """Bytes stored under ``relative`` (0 when nothing is): what a night's run folder takes."""

    def unaccounted(self) -> list[str]:
        """Paths (relative to the root) no committed artifact accounts for: a writer's temporary files,
        or files of a commit that never finished; records (small files written whole) among them."""

    def sweep_cache(self, busy: Callable[[str], bool] = lambda top: False) -> int:
        """Drop from this machine's cache every artifact the store no longer holds as cached (removed, or
        committed again: pruned, or rewritten by an erasure), but under top-level folders ``busy`` says a
        run is writing now (an artifact mid-commit has no manifest for a moment); returns those dropped."""


def is_object_store(root: str | Path) -> bool:
    text = str(root)
    return "://" in text and not text.startswith("file://")


def options_from_connection(connection) -> dict:
    """fsspec storage options from an Airflow Connection (any object with login, password and
    extra_dejson): the access key and secret, and extras such as ``endpoint_url``."""
    options = {key: value for key, value in (connection.extra_dejson or {}).items() if value not in (None, "")}
    if connection.login:
        options["key"] = connection.login
    if connection.password:
        options["secret"] = connection.password
    return options


def open_store(root: str | Path, storage_options: dict | None = None) -> RunStore:
    """The store of ``root``: a local path, or a URL with a scheme fsspec knows (s3://, gs://, ...)."""
    if is_object_store(root):
        return ObjectStore(str(root), storage_options or {})
    return LocalStore(Path(str(root).removeprefix("file://")))


class LocalStore:
    """A local (or shared, mounted) folder: artifacts are written in place, each writer renaming its
    folder into place where it must appear whole."""

    def __init__(self, root: Path):
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def location(self, relative: str) -> str:
        return str(self.root / relative)

    @contextlib.contextmanager
    def staged(self, relative: str, *, keep: bool = False) -> Iterator[Path]:
        path = self.root / relative
        path.mkdir(parents=True, exist_ok=True)
        yield path

    def fetch(self, relative: str) -> Path:
        return self.root / relative

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def write_text(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def read_text(self, relative: str) -> str:
        return (self.root / relative).read_text()

    def remove(self, relative: str) -> None:
        _remove_local(self.root / relative)

    def children(self, relative: str) -> list[str]:
        path = self.root / relative
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def sweep_cache(self, busy: Callable[[str], bool] = lambda top: False) -> int:
        return 0  # no cache: readers read the folder itself

    def bytes_under(self, relative: str) -> int:
        path = self.root / relative
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0

    def unaccounted(self) -> list[str]:
        # Writers here write into a temporary name and rename it into place (see write_text).
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                      if p.name.endswith((".tmp", ".part"))) if self.root.is_dir() else []


class ObjectStore:
    """An object store through fsspec (s3fs for s3://), with a local cache of what this machine read
    or wrote (``RECS_RUN_CACHE``, default: the temp folder)."""

    def __init__(self, url: str, storage_options: dict):
        import fsspec

        protocol, _, path = url.partition("://")
        self.url, self.base = url.rstrip("/"), path.strip("/")
        # Listings are never cached: another machine's commit must be seen at once.
        self.fs = fsspec.filesystem(protocol, skip_instance_cache=True, use_listings_cache=False, **storage_options)
        default_cache = Path(tempfile.gettempdir()) / "recs-run-cache"
        self.cache = Path(os.environ.get("RECS_RUN_CACHE", default_cache)) / hashlib.sha1(url.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def _remote(self, relative: str) -> str:
        return f"{self.base}/{relative}".rstrip("/") if relative else self.base

    def location(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    @contextlib.contextmanager
    def staged(self, relative: str, *, keep: bool = False) -> Iterator[Path]:
        local = self.cache / relative
        if keep:
            self.fetch(relative)
        else:
            _remove_local(local)
        local.mkdir(parents=True, exist_ok=True)
        yield local
        self._commit(relative, local)

    def _commit(self, relative: str, local: Path) -> None:
        remote = self._remote(relative)
        # The old manifest goes first: from here until the new one is written, readers see no artifact.
        if self.fs.exists(f"{remote}/{MANIFEST}"):
            self.fs.rm_file(f"{remote}/{MANIFEST}")
        if self.fs.exists(remote):
            self.fs.rm(remote, recursive=True)
        files = {}
        for path in sorted(p for p in local.rglob("*") if p.is_file() and p.name != MANIFEST):
            name = path.relative_to(local).as_posix()
            self.fs.put_file(str(path), f"{remote}/{name}")  # streamed in parts, not read whole
            files[name] = path.stat().st_size
        manifest = json.dumps({"commit": uuid.uuid4().hex, "files": files})
        self.fs.pipe_file(f"{remote}/{MANIFEST}", manifest.encode())
        (local / MANIFEST).write_text(manifest)

    def fetch(self, relative: str) -> Path:
        local = self.cache / relative
        remote = self._remote(relative)
        manifests = [m for m in self._find(remote) if m.endswith(f"/{MANIFEST}")]
        wanted: set[Path] = set()
        for manifest_path in manifests:
            folder = manifest_path[: -len(MANIFEST) - 1]
            target = self.cache / folder[len(self.base) + 1:] if folder != self.base else self.cache
            text = self.fs.cat_file(manifest_path).decode()
            manifest = json.loads(text)
            cached = target / MANIFEST
            current = cached.exists() and json.loads(cached.read_text())["commit"] == manifest["commit"]
            for name in manifest["files"]:
                path = target / name
                wanted.add(path)
                if not current or not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # Two tasks on this machine may fetch the same file: each renames its own copy into place.
                    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.part")
                    self.fs.get_file(f"{folder}/{name}", str(tmp))
                    tmp.replace(path)
            wanted.add(cached)
            tmp = cached.with_name(f"{MANIFEST}.{uuid.uuid4().hex[:8]}.part")
            tmp.write_text(text)
            tmp.replace(cached)
        # Files of uncommitted or replaced attempts are not part of the artifact here either.
        if local.is_dir():
            for path in [p for p in local.rglob("*") if p.is_file() and p not in wanted]:
                if not path.name.endswith(".part"):  # another task's download in progress
                    path.unlink(missing_ok=True)
        return local

    def _find(self, remote: str) -> list[str]:
        try:
            if self.fs.isfile(remote):
                return []
            return self.fs.find(remote)
        except FileNotFoundError:
            return []

    def exists(self, relative: str) -> bool:
        remote = self._remote(relative)
        return self.fs.exists(f"{remote}/{MANIFEST}") or self.fs.isfile(remote)

    def write_text(self, relative: str, text: str) -> None:
        self.fs.pipe_file(self._remote(relative), text.encode())  # one PUT: whole or not at all

    def read_text(self, relative: str) -> str:
        try:
            return self.fs.cat_file(self._remote(relative)).decode()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.location(relative)} is missing") from None

    def remove(self, relative: str) -> None:
        remote = self._remote(relative)
        if self.fs.exists(remote):
            self.fs.rm(remote, recursive=True)
        _remove_local(self.cache / relative)

    def children(self, relative: str) -> list[str]:
        try:
            entries = self.fs.ls(self._remote(relative), detail=True)
        except FileNotFoundError:
            return []
        names = set()
        for entry in entries:
            # Some stores (SeaweedFS's filer) keep a folder after its last object went: not a child.
            if entry["type"] == "file" or any(
                    found["type"] == "file" for found in self.fs.find(entry["name"], detail=True).values()):
                names.add(entry["name"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(names - {MANIFEST})

    def sweep_cache(self, busy: Callable[[str], bool] = lambda top: False) -> int:
        dropped, skipped = 0, {}
        for cached in sorted(self.cache.rglob(MANIFEST)) if self.cache.is_dir() else []:
            folder = cached.parent
            relative = folder.relative_to(self.cache).as_posix()
            top = relative.split("/", 1)[0]
            if top not in skipped:
                skipped[top] = busy(top)
            if skipped[top]:
                continue
            try:
                remote = json.loads(self.fs.cat_file(f"{self._remote(relative)}/{MANIFEST}").decode())["commit"]
            except FileNotFoundError:
                remote = None
            try:
                local = json.loads(cached.read_text())["commit"]
            except (FileNotFoundError, ValueError, KeyError):
                continue  # being replaced by a fetch on this machine now
            if remote != local:
                _remove_local(folder)
                dropped += 1
        return dropped

    def bytes_under(self, relative: str) -> int:
        try:
            return sum(int(entry.get("size") or 0) for entry in
                       self.fs.find(self._remote(relative), detail=True).values() if entry["type"] == "file")
        except FileNotFoundError:
            return 0

    def unaccounted(self) -> list[str]:
        keys = self._find(self.base)
        listed: dict[str, set[str]] = {}
        for key in keys:
            if key.endswith(f"/{MANIFEST}"):
                folder = key[: -len(MANIFEST) - 1]
                listed[folder] = set(json.loads(self.fs.cat_file(key).decode())["files"])
        found = []
        for key in keys:
            if key.endswith(f"/{MANIFEST}"):
                continue
            owner = max((f for f in listed if key.startswith(f + "/")), key=len, default=None)
            if owner is None or key[len(owner) + 1:] not in listed[owner]:
                found.append(key[len(self.base) + 1:])
        return sorted(found)


def _remove_local(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink(missing_ok=True)
