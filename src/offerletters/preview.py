"""Publishers that send nothing: for validating a roster and previewing its letters.

They stand where the queue would, so `validate` and `preview` run exactly the
pipeline that `send` runs and report exactly what it would have sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from offerletters.config import Settings
from offerletters.letters import Letter
from offerletters.mailer import Composer


class _Nothing:
    async def put(self, letter: Letter) -> None:
        return None


class Discard:
    """Accepts every letter and keeps none: validation only."""

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[_Nothing]:
        yield _Nothing()


class _Collector:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.letters: list[Letter] = []

    async def put(self, letter: Letter) -> None:
        if len(self.letters) < self.limit:
            self.letters.append(letter)


class Collect:
    """Keeps the first `limit` letters of the last batch, for showing them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.letters: list[Letter] = []

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[_Collector]:
        collector = _Collector(self.limit)
        yield collector
        self.letters = collector.letters


class _FolderWriter:
    def __init__(self, folder: Path, settings: Settings) -> None:
        self._folder = folder
        self._compose = Composer(settings)
        self.written: list[Path] = []

    async def put(self, letter: Letter) -> None:
        message = self._compose(letter)
        stem = self._folder / f"row-{letter.row:06d}-{letter.letter_id}"
        eml, html = stem.with_suffix(".eml"), stem.with_suffix(".html")
        eml.write_bytes(message.data)
        html.write_text(letter.html, encoding="utf-8")
        self.written += [eml, html]


class FolderPublisher:
    """Writes every letter as .eml and .html into a folder for people to read."""

    def __init__(self, folder: Path, settings: Settings) -> None:
        self._folder = folder
        self._settings = settings

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[_FolderWriter]:
        """A rejected batch leaves no letters behind, as it would send none."""
        self._folder.mkdir(parents=True, exist_ok=True)
        writer = _FolderWriter(self._folder, self._settings)
        try:
            yield writer
        except BaseException:
            for path in writer.written:
                path.unlink(missing_ok=True)
            raise
