"""The README's topic table is the code's topic table."""

from __future__ import annotations

from pathlib import Path

from ach_events.topics import ALL_TOPICS

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_topic_rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`ach."):
            rows[cells[0].strip("`")] = cells[1:6]
    return rows


def test_every_topic_is_documented_as_it_is_configured() -> None:
    documented = readme_topic_rows()
    assert set(documented) == {t.name for t in ALL_TOPICS}
    for t in ALL_TOPICS:
        expected = [t.key, str(t.partitions), t.retention, t.producer, ", ".join(t.consumers) or "—"]
        assert documented[t.name] == expected, t.name
