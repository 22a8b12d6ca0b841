"""Bad source rows are quarantined with a reason (never silently dropped) and kept out of the snapshot."""

from datetime import timedelta

import psycopg
import pytest

from rec_models.data.seed import seed_world
from rec_models.data.snapshot import extract_snapshot
from rec_models.data.rules import SERVICE_START
from rec_models.data.validate import SourceDataError, validate_sources
from bench.faults import BAD_ROWS, BAD_ROWS_DAY, inject_bad_rows
from tests.conftest import END


WINDOW = END - timedelta(days=180)
DAY = BAD_ROWS_DAY


def _valid(reports) -> dict[str, int]:
    return {table: r.rows - r.rejected for table, r in reports.items()}


@pytest.fixture
def seeded(fresh_db, small_world):
    with psycopg.connect(fresh_db) as conn:
        seed_world(conn, small_world)
    return fresh_db


def test_each_bad_class_is_quarantined_with_its_reason(seeded, small_world):
    with psycopg.connect(seeded) as conn:
        inject_bad_rows(conn, int(small_world.view_user[0]), int(small_world.view_video[0]))
        reports = validate_sources(conn, "run-a", END, WINDOW, SERVICE_START, max_rejected_share=0.5)
        expected: dict[tuple[str, str], int] = {}
        for table, reason, _, count in BAD_ROWS:
            if count:
                expected[(table, reason)] = expected.get((table, reason), 0) + count
        for (table, reason), count in expected.items():
            assert reports[table].by_reason.get(reason) == count, (table, reason, reports[table].by_reason)
        # Nothing else was rejected: the generator's own rows are all valid.
        assert sum(r.rejected for r in reports.values()) == sum(expected.values())
        stored = conn.execute("SELECT count(*) FROM rec.rejected_rows WHERE run_key = 'run-a'").fetchone()[0]
        assert stored == sum(expected.values())
        sample = conn.execute("SELECT row_data FROM rec.rejected_rows WHERE reason = 'watch_seconds absurd'").fetchone()[0]
        assert sample["watch_seconds"] == 999999

        # Re-validating the same run replaces its quarantine instead of adding to it.
        conn.commit()
        validate_sources(conn, "run-a", END, WINDOW, SERVICE_START, max_rejected_share=0.5)
        assert conn.execute("SELECT count(*) FROM rec.rejected_rows WHERE run_key = 'run-a'").fetchone()[0] == stored

        # The snapshot reads exactly the rows that passed, from validate's verdicts or evaluating anew.
        conn.commit()
        snap = extract_snapshot(conn, END, WINDOW, SERVICE_START, validated=_valid(reports))
        again = extract_snapshot(conn, END, WINDOW, SERVICE_START)
        assert sorted(zip(snap.view_user, snap.view_video, snap.viewed_at)) == \
            sorted(zip(again.view_user, again.view_video, again.viewed_at))
        assert snap.domains == again.domains
        assert sorted(zip(snap.visit_user, snap.visit_domain, snap.visit_date)) == \
            sorted(zip(again.visit_user, again.visit_domain, again.visit_date))
        assert len(snap.view_user) == reports["video_views"].rows - reports["video_views"].rejected
        assert 987654321 not in set(snap.view_video.tolist())
        assert 999 not in set(snap.visit_user.tolist())
        assert 424242 not in set(snap.video_id.tolist())
        assert all(d == d.lower() and not d.startswith("www.") for d in snap.domains)


def test_a_rejected_row_is_quarantined_once_however_many_windows_hold_it(seeded, small_world):
    with psycopg.connect(seeded) as conn:
        inject_bad_rows(conn, int(small_world.view_user[0]), int(small_world.view_video[0]))
        first = validate_sources(conn, "night-1", END, WINDOW, SERVICE_START, max_rejected_share=0.5)
        stored = conn.execute("SELECT count(*) FROM rec.rejected_rows").fetchone()[0]
        assert stored == sum(r.rejected for r in first.values())
        conn.commit()
        # The next night's window holds the same bad rows (a re-delivered day): counted, not stored again.
        later = END + timedelta(days=1)
        second = validate_sources(conn, "night-2", later, WINDOW + timedelta(days=1), SERVICE_START, max_rejected_share=0.5)
        assert sum(r.rejected for r in second.values()) == sum(r.rejected for r in first.values())
        assert conn.execute("SELECT count(*) FROM rec.rejected_rows").fetchone()[0] == stored
        assert conn.execute("SELECT count(*) FROM rec.rejected_rows WHERE run_key = 'night-1' AND last_seen_end = %s",
                            (later,)).fetchone()[0] == stored
        # Exact duplicates stay one row per copy.
        copies = conn.execute("SELECT count(*) FROM rec.rejected_rows WHERE reason = 'duplicate row'").fetchone()[0]
        assert copies == first["video_views"].by_reason.get("duplicate row", 0) + \
            first["user_domain_visits"].by_reason.get("duplicate row", 0)
        conn.commit()
        # A rerun of the first night quarantines the same rows.
        validate_sources(conn, "night-1", END, WINDOW, SERVICE_START, max_rejected_share=0.5)
        assert conn.execute("SELECT count(*) FROM rec.rejected_rows").fetchone()[0] == stored


def test_domains_are_normalised_not_rejected(seeded, small_world):
    with psycopg.connect(seeded) as conn:
        conn.execute(f"INSERT INTO user_domain_visits VALUES (5, 'WWW.Example-Shop.COM', '{DAY}', 3)")
        conn.commit()
        reports = validate_sources(conn, "run-b", END, WINDOW, SERVICE_START, max_rejected_share=0.5)
        assert reports["user_domain_visits"].rejected == 0
        snap = extract_snapshot(conn, END, WINDOW, SERVICE_START)
        assert "example-shop.com" in snap.domains


def test_too_many_bad_rows_stop_the_run_with_a_clear_message(seeded, small_world):
    with psycopg.connect(seeded) as conn:
        conn.execute("INSERT INTO video_views SELECT user_id, video_id, viewed_at, -1 FROM video_views")
        conn.commit()
        with pytest.raises(SourceDataError) as info:
            validate_sources(conn, "run-c", END, WINDOW, SERVICE_START, max_rejected_share=0.2)
        message = str(info.value)
        assert "video_views" in message and "watch_seconds missing or negative" in message and "e.g." in message
        # The quarantine is kept so operators can look at it.
        assert conn.execute("SELECT count(*) FROM rec.rejected_rows WHERE run_key = 'run-c'").fetchone()[0] > 0


def test_empty_views_fail_clearly(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        with pytest.raises(SourceDataError, match="video_views has no valid rows"):
            validate_sources(conn, "run-d", END, WINDOW, SERVICE_START, max_rejected_share=0.2)


def test_rows_after_the_interval_end_are_not_visible(seeded, small_world):
    with psycopg.connect(seeded) as conn:
        before = extract_snapshot(conn, END, WINDOW, SERVICE_START)
        conn.execute(f"INSERT INTO video_views VALUES (5, {int(small_world.video_id[0])}, %s, 10)", (END + timedelta(hours=1),))
        conn.commit()
        after = extract_snapshot(conn, END, WINDOW, SERVICE_START)
        assert len(after.view_user) == len(before.view_user)


def test_a_video_published_after_the_interval_end_is_not_in_its_catalogue(seeded, small_world):
    """A night rerun after later days arrived sees the catalogue it saw the first time."""
    with psycopg.connect(seeded) as conn:
        before = extract_snapshot(conn, END, WINDOW, SERVICE_START)
        later = int(small_world.video_id.max()) + 1
        conn.execute("INSERT INTO videos VALUES (%s, 'Published tomorrow', '', '{}', %s, true)",
                     (later, END + timedelta(hours=20)))
        conn.commit()
        reports = validate_sources(conn, "run-later", END, WINDOW, SERVICE_START, max_rejected_share=0.2)
        after = extract_snapshot(conn, END, WINDOW, SERVICE_START, validated=_valid(reports))
        assert list(after.video_id) == list(before.video_id) and later not in after.video_text
        assert later in extract_snapshot(conn, END + timedelta(days=1), WINDOW, SERVICE_START).video_id


def test_timestamps_in_the_future_are_quarantined(seeded, small_world):
    """A run whose interval ends ahead of the clock (a manual run) must not take rows from the future."""
    from datetime import datetime, timezone

    later = datetime.now(timezone.utc) + timedelta(days=2)
    video = int(small_world.video_id[0])
    with psycopg.connect(seeded) as conn:
        conn.execute("INSERT INTO video_views VALUES (5, %s, now() + interval '1 day', 30)", (video,))
        conn.execute("INSERT INTO user_domain_visits VALUES (5, 'future-site.com', (now() + interval '1 day')::date, 1)")
        conn.commit()
        reports = validate_sources(conn, "run-f", later, later - timedelta(days=180), SERVICE_START, 0.5)
    assert reports["video_views"].by_reason.get("viewed_at in the future") == 1
    assert reports["user_domain_visits"].by_reason.get("visit_date in the future") == 1


def _outcome(conn, run_key, end):
    """What a night's validation gives: its counts, the rows its extract reads, the quarantine."""
    reports = validate_sources(conn, run_key, end, end - timedelta(days=180), SERVICE_START, max_rejected_share=0.5)
    conn.commit()
    snap = extract_snapshot(conn, end, end - timedelta(days=180), SERVICE_START, validated=_valid(reports))
    anew = extract_snapshot(conn, end, end - timedelta(days=180), SERVICE_START)
    assert _rows(snap) == _rows(anew)  # the kept verdicts read back as judging every row now reads
    quarantine = sorted(conn.execute("SELECT source_table, reason, row_hash, last_seen_end FROM rec.rejected_rows "
                                     "WHERE run_key = %s", (run_key,)).fetchall())
    conn.commit()
    counts = {t: (r.rows, r.rejected, r.by_reason) for t, r in reports.items()}
    return reports, counts, _rows(snap), quarantine


def _rows(snap):
    return (sorted(zip(snap.view_user.tolist(), snap.view_video.tolist(), snap.viewed_at.tolist(),
                       snap.watch_seconds.tolist())),
            sorted(zip(snap.visit_user.tolist(), [snap.domains[d] for d in snap.visit_domain], snap.visit_date.tolist(),
                       snap.visits.tolist())),
            snap.video_id.tolist(), snap.video_text)


def _forget_verdicts(conn):
    conn.execute("TRUNCATE rec.judged_days, rec.judged_videos, rec.judged_video_views, rec.judged_user_domain_visits")
    conn.commit()


def test_a_night_judges_only_the_days_that_changed_and_gets_what_judging_every_day_gets(seeded, small_world):
    user, video = int(small_world.view_user[0]), int(small_world.view_video[0])
    with psycopg.connect(seeded) as conn:
        inject_bad_rows(conn, user, video)
        first, *_ = _outcome(conn, "night-1", END)
        assert all(r.days.judged for r in first.values())
        # Between the nights: a new day arrives; an old day gets a late duplicate, another a row
        # corrected to a bad value, a third loses a row; a video's title is emptied (its views become
        # views of an unknown video without their days changing); someone asks to be forgotten.
        later = END + timedelta(days=1)
        other = int(small_world.view_user[1])
        conn.execute("INSERT INTO video_views SELECT user_id, video_id, viewed_at + interval '1 day', watch_seconds "
                     "FROM video_views WHERE viewed_at >= %s - interval '1 day' AND viewed_at < %s", (END, END))
        conn.execute("INSERT INTO video_views SELECT * FROM video_views WHERE viewed_at::date = '2026-11-10' LIMIT 1")
        conn.execute("UPDATE video_views SET watch_seconds = -5 WHERE ctid = "
                     "(SELECT ctid FROM video_views WHERE viewed_at::date = '2026-11-11' LIMIT 1)")
        conn.execute("DELETE FROM user_domain_visits WHERE ctid = "
                     "(SELECT ctid FROM user_domain_visits WHERE visit_date = '2026-11-12' LIMIT 1)")
        emptied = conn.execute("SELECT video_id FROM video_views WHERE viewed_at::date = '2026-11-01' AND video_id > 0 "
                               "AND video_id <> %s LIMIT 1", (video,)).fetchone()[0]
        conn.execute("UPDATE videos SET title = ' ' WHERE video_id = %s", (emptied,))
        conn.execute("INSERT INTO rec.erasure_requests (user_id, requested_by) VALUES (%s, 'test')", (other,))
        conn.commit()

        second, counts, rows, quarantine = _outcome(conn, "night-2", later)
        judged = {t: r.days.judged for t, r in second.items()}
        assert {"2026-11-10", "2026-11-11"} <= set(judged["video_views"])
        assert "2026-11-12" in judged["user_domain_visits"]
        assert len(judged["video_views"]) < second["video_views"].days.days / 4  # not every day again
        assert second["video_views"].by_reason["view of an unknown video"] > 0
        assert other not in set(rows[0][i][0] for i in range(len(rows[0])))

        # A rerun of the night quarantines the same rows and counts the same.
        again = _outcome(conn, "night-2", later)
        assert again[1:] == (counts, rows, quarantine)
        assert all(not r.days.judged or r.days.judged == [later.date().isoformat()] for r in again[0].values())

        # Judging every day anew (the verdicts forgotten) gives the same night.
        _forget_verdicts(conn)
        anew = _outcome(conn, "night-2", later)
        assert anew[1:] == (counts, rows, quarantine)


def test_a_backfill_of_an_earlier_night_leaves_the_later_nights_days_judged(seeded, small_world):
    with psycopg.connect(seeded) as conn:
        _outcome(conn, "night-2", END)
        earlier = END - timedelta(days=3)
        _, counts, rows, quarantine = _outcome(conn, "night-backfill", earlier)
        assert max(r[2] for r in rows[0]) < earlier.timestamp()
        # The later night's days are still judged: its rerun judges at most the days the backfill cut.
        reports = validate_sources(conn, "night-2", END, END - timedelta(days=180), SERVICE_START, 0.5)
        assert len(reports["video_views"].days.judged) <= 2
        _forget_verdicts(conn)
        assert _outcome(conn, "night-backfill", earlier)[1:] == (counts, rows, quarantine)
