"""Test helpers that build pipeline inputs straight from a synthetic world (no database)."""

from __future__ import annotations

import numpy as np

from rec_models.data.snapshot import Snapshot
from rec_models.data.synthetic import World


def snapshot_from_world(world: World) -> Snapshot:
    """What the extract would read from a seeded database, minus the database."""
    visible = world.viewed_at < world.end.timestamp()
    used = np.unique(world.visit_domain)
    remap = np.full(len(world.domain_names), -1)
    order = np.argsort([world.domain_names[i] for i in used])
    used = used[order]
    remap[used] = np.arange(len(used))
    return Snapshot(
        view_user=world.view_user[visible], view_video=world.view_video[visible],
        viewed_at=world.viewed_at[visible], watch_seconds=world.watch_seconds[visible],
        video_id=world.video_id, is_active=world.is_active, published_at=world.published_at,
        video_text={int(v): {"title": t, "description": d, "tags": g}
                    for v, t, d, g in zip(world.video_id, world.title, world.description, world.tags)},
        visit_user=world.visit_user, visit_domain=remap[world.visit_domain].astype(np.int32),
        visit_date=world.visit_date.astype(np.int32), visits=world.visits,
        domains=[world.domain_names[i] for i in used], end=world.end.timestamp(),
    )


def topic_of_videos(world: World) -> dict[int, int]:
    return dict(zip(world.video_id.tolist(), world.video_topic.tolist()))
