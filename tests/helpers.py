"""Test helpers that read a synthetic world's planted truth."""

from __future__ import annotations

from rec_models.data.synthetic import World


def topic_of_videos(world: World) -> dict[int, int]:
    return dict(zip(world.video_id.tolist(), world.video_topic.tolist()))
