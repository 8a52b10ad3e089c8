"""results.jsonl: one record per finished run, appended and synced as it finishes, read back for `--resume`."""

from __future__ import annotations

import os
from pathlib import Path

from .jobs import RunRecord


class ResultsLog:
    """results.jsonl in the output folder: one record per finished run, appended and synced as it finishes."""

    def __init__(self, out: Path):
        self.path = out / "results.jsonl"

    def read(self) -> list[RunRecord]:
        """Records so far; a line cut by a killed process is ignored (that run is simply run again)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(RunRecord.model_validate_json(line))
            except ValueError:
                continue
        return records

    def append(self, record: RunRecord) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            if file.tell() > 0 and not self._ends_with_newline():
                file.write("\n")  # after a line cut by a kill
            file.write(record.model_dump_json() + "\n")
            file.flush()
            os.fsync(file.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"
