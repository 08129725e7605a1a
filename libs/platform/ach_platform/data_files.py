"""Definition files the services read as data (screening instruments, measures, scorecards): YAML or
JSON, listed from directories, read with one message naming what is wrong with the file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = (".yaml", ".yml", ".json")


class DataFileError(Exception):
    """What is wrong with a file as a whole (its caller names the file)."""


def data_files(directories: Iterable[Path]) -> list[Path]:
    return sorted(p for d in directories for p in d.iterdir() if p.suffix in SUFFIXES and p.is_file())


def read_data_file(path: Path, max_bytes: int | None = None) -> Any:
    """The file's content; DataFileError says why it cannot be read (size, encoding, syntax and line)."""
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise DataFileError(f"is larger than {max_bytes // 1024} KiB")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DataFileError("is not UTF-8 text") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "msg", "")
        raise DataFileError(f"is not valid {path.suffix[1:].upper()}{where}: {problem}") from None
