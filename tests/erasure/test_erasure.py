"""Proof, not promise: a marker person is planted in every place the product writes (published and kept
partitions, a staging table, the judged source rows, rejected rows, a health sample, run
folders with their snapshots, datasets, models, scores and checkpoints, on local disk and on a real S3
server, and a worker's cache), an erasure is requested, and then every table, every partition and every
byte of every file and object is scanned for their id. The night after the erasure (upstream still
holds the person) trains warm, and neither its lists nor its checkpoints hold them."""

from __future__ import annotations

import dataclasses
import io
import threading
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.id_maps import ERASED_USER
from rec_models.data.seed import seed_world
from rec_models.data.validate import validate_sources
from rec_models.data.rules import SERVICE_START
from rec_models.db.erasure import TABLE_PLACES
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import USER_RECOMMENDATIONS
from rec_models.db.publish import stage_output
from rec_models.erasure import FILE_PLACES
from rec_models.faults import InjectedFault
from rec_models.run import Run, run_folders, sweep_cache
from rec_models.storage import ObjectStore, open_store
from tests.conftest import END

# A person no generator makes up: their id is unmistakable in any table, text file or binary array.
MARKER = 8_765_432_109_876
NIGHTS = (END - timedelta(days=1), END)
AFTER = END + timedelta(days=1)


def _config(run_root: str) -> PipelineConfig:
    config = PipelineConfig.from_params({"top_n": 5, "mf_epochs": 2, "neumf_epochs": 2, "two_tower_epochs": 3,
                                         "keep_run_folders": 3})
    return dataclasses.replace(config, run_root=run_root)


def _plant_marker(conn: psycopg.Connection, world) -> None:
    """The marker gets a real user's views and visits (up to a day after END: the night after), a bad
    view (quarantined) and a duplicate visit (quarantined)."""
    donor = int(world.view_user[0])
    conn.execute("INSERT INTO video_views SELECT %s, video_id, viewed_at, watch_seconds FROM video_views "
                 "WHERE user_id = %s", (MARKER, donor))
    conn.execute("INSERT INTO user_domain_visits SELECT %s, domain, visit_date, visits FROM user_domain_visits "
                 "WHERE user_id = %s", (MARKER, donor))
    video = conn.execute("SELECT video_id FROM video_views WHERE user_id = %s LIMIT 1", (donor,)).fetchone()[0]
    # The day after END repeats END's last day: the night after has its views (the marker's among them).
    conn.execute("INSERT INTO video_views SELECT user_id, video_id, viewed_at + interval '1 day', watch_seconds "
                 "FROM video_views WHERE viewed_at >= %s AND viewed_at < %s", (END - timedelta(days=1), END))
    for day in (2, 0):  # in the window of both nights and of the one after
        at = END - timedelta(days=day, hours=3)
        conn.execute("INSERT INTO video_views VALUES (%s, %s, %s, 999999)", (MARKER, video, at))
        conn.execute("INSERT INTO video_views VALUES (%s, %s, %s, 30)", (MARKER, video, at + timedelta(minutes=5)))
        conn.execute("INSERT INTO user_domain_visits VALUES (%s, 'marker-only.example', %s, 2), "
                     "(%s, 'marker-only.example', %s, 2)", (MARKER, at.date(), MARKER, at.date()))
    conn.commit()


@pytest.fixture(params=["local", "s3"])
def world(request, database_factory, small_world, tmp_path, monkeypatch):
    """Two published nights with the marker in every place; the run root local or on the S3 server."""
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        monkeypatch.setenv("RECS_RUN_CACHE", str(tmp_path / "cache"))
        run_root, options = f"{s3.url}/{uuid.uuid4().hex[:8]}", s3.storage_options
    else:
        run_root, options = str(tmp_path / "runs"), {}
    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, small_world)
        _plant_marker(conn, small_world)
    config = _config(run_root)
    runs = [Run(database_url=url, interval_end=end, dag_run_id=f"night-{i}", config=config, storage_options=options)
            for i, end in enumerate((*NIGHTS, AFTER))]
    for run in runs[:2]:
        result = pipeline.run_all(run)
        assert result["serving"] is not None
    with psycopg.connect(url) as conn:
        # A place a night leaves the person in only when it fails part-way: a staging table of a publish
        # that died before its swap. (The judged source rows hold them every night.)
        run_id = conn.execute("SELECT max(model_run_id) FROM rec.model_runs").fetchone()[0]
        stage_output(conn, USER_RECOMMENDATIONS, run_id, [[
            np.array([run_id]), np.array([MARKER]), np.array([1], dtype=np.int16), np.array([1]),
            np.array([1.0], dtype=np.float32), "hot"]])
        validate_sources(conn, "a-night-that-died", END, END - timedelta(days=180), SERVICE_START, 1.0)
        # A health sample naming the marker (the pick is by hash: planted, as any user could be picked).
        conn.execute("UPDATE rec.run_health SET sample_users = sample_users || %s::jsonb",
                     (f'{{"hot": {MARKER}}}',))
        conn.commit()
    if request.param == "s3":
        # Another worker's cache, which read the nights' folders (its next task sweeps it).
        monkeypatch.setenv("RECS_RUN_CACHE", str(tmp_path / "other-worker"))
        other = open_store(run_root, options)
        for folder in run_folders(other):
            other.fetch(folder.slug)
        monkeypatch.setenv("RECS_RUN_CACHE", str(tmp_path / "cache"))
    return url, runs, request.param, tmp_path


def _tables_holding(conn: psycopg.Connection, marker: int) -> list[str]:
    """Every table and partition of schema rec whose rows mention the marker (but the request itself)."""
    found = []
    for (name,) in conn.execute("SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'rec'::regnamespace "
                                "AND c.relkind = 'r' AND c.relname <> 'erasure_requests' ORDER BY 1").fetchall():
        hit = conn.execute(f'SELECT count(*) FROM rec."{name}" t WHERE t::text LIKE %s', (f"%{marker}%",)).fetchone()[0]
        if hit:
            found.append(f"rec.{name} ({hit} rows)")
    return found


def _traces_in_bytes(data: bytes, marker: int) -> bool:
    """The id as text (JSON, CSV) or as a little-endian int64 (numpy arrays), in the bytes or in any
    member of a zip (an .npz, a torch file)."""
    needles = (str(marker).encode(), np.int64(marker).tobytes())
    if any(n in data for n in needles):
        return True
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return any(_traces_in_bytes(archive.read(name), marker) for name in archive.namelist())
        except zipfile.BadZipFile:
            return False
    return False


def _files_holding(kind: str, runs: list[Run], tmp_path: Path, marker: int) -> list[str]:
    found = []
    store = runs[0].store
    if kind == "s3":
        assert isinstance(store, ObjectStore)
        for key in store.fs.find(store.base):
            if _traces_in_bytes(store.fs.cat_file(key), marker):
                found.append(f"s3://{key}")
        roots = [tmp_path / "cache", tmp_path / "other-worker"]
    else:
        roots = [Path(runs[0].config.run_root)]
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()):
            if _traces_in_bytes(path.read_bytes(), marker):
                found.append(str(path))
    return found


@pytest.mark.timeout(1200)
def test_a_person_is_erased_from_every_place_and_never_comes_back(world, monkeypatch, tmp_path):
    url, runs, kind, tmp = world
    with psycopg.connect(url) as conn:
        assert _tables_holding(conn, MARKER), "the marker was not planted in the tables"
    assert _files_holding(kind, runs, tmp, MARKER), "the marker was not planted in the run folders"

    assert pipeline.file_requests(runs[0], [MARKER], requested_by="test") == 1
    assert pipeline.file_requests(runs[0], [MARKER]) == 0  # one open request per person

    # A reader in the middle of a query of the _current views sees the lists of before, whole.
    reader = psycopg.connect(url)
    reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    before = reader.execute("SELECT count(*) FROM rec.user_recommendations_current WHERE user_id = %s",
                            (MARKER,)).fetchone()[0]
    assert before > 0
    erased = threading.Thread(target=pipeline.erase, args=(runs[2],), kwargs={"nightly": False})
    erased.start()
    erased.join(timeout=600)  # a reader's open snapshot does not hold the erasure up
    assert not erased.is_alive()
    assert reader.execute("SELECT count(*) FROM rec.user_recommendations_current WHERE user_id = %s",
                          (MARKER,)).fetchone()[0] == before
    reader.rollback()
    reader.close()

    with psycopg.connect(url) as conn:
        done_at, removed, last_error = conn.execute(
            "SELECT done_at, removed, last_error FROM rec.erasure_requests WHERE user_id = %s", (MARKER,)).fetchone()
        assert done_at is not None and last_error is None
        assert set(removed) == set(TABLE_PLACES) | set(FILE_PLACES)
        assert all(removed[place] > 0 for place in (*TABLE_PLACES, *FILE_PLACES)), removed
        assert _tables_holding(conn, MARKER) == []
    if kind == "s3":
        # The other worker's next task sweeps its cache before reading anything.
        monkeypatch.setenv("RECS_RUN_CACHE", str(tmp / "other-worker"))
        assert sweep_cache(open_store(runs[0].config.run_root, runs[0].storage_options)) > 0
        monkeypatch.setenv("RECS_RUN_CACHE", str(tmp / "cache"))
    assert _files_holding(kind, runs, tmp, MARKER) == []
    # The nights' records stay (an erasure removes people, not what the nights decided and counted).
    assert runs[1].files.read_validation() and runs[1].files.read_evaluation("mf")
    # The parent night's checkpoints keep their rows, the marker's cleared and unnamed.
    parent = runs[1].files
    model, ids, _ = parent.load_checkpoint("mf")
    assert MARKER not in ids.user and (ids.user == ERASED_USER).sum() == 1

    # The night after: upstream still holds the marker; the night trains warm and publishes nobody erased.
    summary = pipeline.run_all(runs[2])
    assert summary["serving"] is not None
    with psycopg.connect(url) as conn:
        assert _tables_holding(conn, MARKER) == []
        modes = dict(conn.execute("SELECT model_name, train_mode FROM rec.model_runs WHERE run_key = %s",
                                  (runs[2].run_key,)).fetchall())
    assert "warm" in modes.values(), modes
    for name in modes:
        _, ids, header = runs[2].files.load_checkpoint(name)
        assert MARKER not in ids.user and ERASED_USER not in ids.user, name
    assert _files_holding(kind, runs, tmp, MARKER) == []
    night_summary = runs[2].files._read_json("summary.json")
    assert night_summary["personal_data"] == {"requested_people_in_upstream_sources": 1, "open_requests": 0,
                                              "oldest_open": None, "most_attempts": 0}
    assert "rejected rows" in night_summary["retention"]


def test_a_failed_erasure_stays_open_alerts_and_finishes_on_retry(database_factory, small_world, tmp_path,
                                                                   monkeypatch):
    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, small_world)
        _plant_marker(conn, small_world)
    run = Run(database_url=url, interval_end=END, dag_run_id="night", config=_config(str(tmp_path / "runs")))
    pipeline.run_all(run)
    pipeline.file_requests(run, [MARKER, int(small_world.view_user[1])])
    monkeypatch.setenv("RECS_FAULTS", "erasure:after_tables")
    with pytest.raises(InjectedFault):
        pipeline.erase(run)
    with psycopg.connect(url) as conn:
        open_requests = conn.execute("SELECT attempts, last_error FROM rec.erasure_requests WHERE done_at IS NULL"
                                     ).fetchall()
        assert len(open_requests) == 2 and all(a == 1 and "InjectedFault" in e for a, e in open_requests)
        assert conn.execute("SELECT count(*) FROM rec.alerts WHERE event = 'erasure_failed'").fetchone()[0] == 1
    monkeypatch.delenv("RECS_FAULTS")
    # A folder another run is using now leaves the requests open, saying why; the next attempt finishes.
    busy = run_folders(run.store)[0]
    busy.mark_in_use()
    assert pipeline.erase(run, nightly=False)["done"] == 0
    with psycopg.connect(url) as conn:
        errors = [r[0] for r in conn.execute("SELECT last_error FROM rec.erasure_requests").fetchall()]
        assert all("in use by another run" in e for e in errors)
    # Night after night busy: the third attempt on says so in an alert, not only in the table.
    pipeline.erase(run, nightly=False)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM rec.alerts WHERE event = 'erasure_failed' AND body LIKE %s",
                            ("%open after 3 attempts%",)).fetchone()[0] == 1
    busy.unmark_in_use()
    assert pipeline.erase(run, nightly=False)["done"] == 2
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM rec.erasure_requests WHERE done_at IS NULL").fetchone()[0] == 0
        assert _tables_holding(conn, MARKER) == []
    assert _files_holding("local", [run], tmp_path, MARKER) == []
