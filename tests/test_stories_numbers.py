"""Story numbers are reserved from the store in blocks: unique across processes, one
transaction per block rather than one per new story."""

from __future__ import annotations

from pathlib import Path

from monitor.storage import open_storage
from monitor.storage.stories import StoryRepository
from monitor.stories.stored import STORY_NUMBER_BLOCK, StoryNumbers, WindowStoryIndex


class CountingRows:
    """The real repository, counting its reservations (each one a write transaction)."""

    def __init__(self, repository: StoryRepository) -> None:
        self.repository = repository
        self.reservations = 0

    def reserve_story_numbers(self, count: int) -> range:
        self.reservations += 1
        return self.repository.reserve_story_numbers(count)


def test_two_stores_on_one_file_never_share_a_story_number(tmp_path: Path) -> None:
    first, second = open_storage(tmp_path / "s.db"), open_storage(tmp_path / "s.db")
    try:
        a = WindowStoryIndex(StoryRepository(first.connection))
        b = WindowStoryIndex(StoryRepository(second.connection))
        ids = [index.new_story_id() for _ in range(50) for index in (a, b)]
        assert len(set(ids)) == len(ids) == 100
        # A restarted keeper starts after every number handed out before it.
        again = WindowStoryIndex(StoryRepository(first.connection))
        assert int(again.new_story_id()) > max(int(i) for i in ids)
    finally:
        first.close()
        second.close()


def test_numbers_come_in_blocks(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "s.db")
    try:
        rows = CountingRows(StoryRepository(store.connection))
        numbers = StoryNumbers(rows)  # type: ignore[arg-type]  # only reserve_story_numbers is used
        taken = [numbers.next() for _ in range(STORY_NUMBER_BLOCK * 2 + 1)]
        assert taken == list(range(1, STORY_NUMBER_BLOCK * 2 + 2))
        assert rows.reservations == 3
    finally:
        store.close()
