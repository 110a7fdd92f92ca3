"""The floors benchmark's profile summary (bench/bench_floors.py: py-spy's collapsed stacks → top frames).

Pure logic."""

from __future__ import annotations

from bench.bench_floors import top_frames

ROOT = 'process 7:"python -m services.scorm";<module> (services/scorm/__main__.py:3)'
COLLAPSED = "\n".join([
    f"{ROOT};commit (services/scorm/runtime.py:120);execute (asyncpg/connection.py:10) 6",
    f"{ROOT};commit (services/scorm/runtime.py:131);send (asyncio/selector_events.py:9) 3",
    f"{ROOT};publish (shared/bus/relay.py:40);send (asyncio/selector_events.py:9) 1",
    "not a stack line",
])

def test_own_time_goes_to_the_leaf_and_inclusive_time_to_every_frame_of_this_repository_once_per_sample() -> None:
    top = top_frames(COLLAPSED)
    assert top["samples"] == 10
    assert top["own"] == [("asyncpg/connection.py:execute", 60.0), ("asyncio/selector_events.py:send", 40.0)]
    # Lines are dropped, so the two commit lines are one frame; library frames are not in the inclusive list.
    # Entry points (module bodies, a service's main: under every sample) say nothing and are left out.
    assert top["inclusive"] == [("services/scorm/runtime.py:commit", 90.0), ("shared/bus/relay.py:publish", 10.0)]


def test_no_samples_gives_empty_lists_not_a_division_by_zero() -> None:
    assert top_frames("") == {"samples": 0, "own": [], "inclusive": []}
