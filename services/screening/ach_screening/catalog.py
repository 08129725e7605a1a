"""The instruments this service knows: the data files shipped in ``ach_screening/instruments/`` and
any in ``SCREENING_INSTRUMENTS_DIR``. A new instrument is a new file, not new code."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ach_screening.domain import Instrument, InstrumentError, parse_instrument

SHIPPED = Path(__file__).parent / "instruments"
SUFFIXES = (".yaml", ".yml", ".json")


def read_instrument(path: Path) -> Instrument:
    """One instrument file; InstrumentError names the file and every problem in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstrumentError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "msg", "")
        raise InstrumentError(
            str(path), [f"is not valid {path.suffix[1:].upper()}{where}: {problem}"]
        ) from None
    return parse_instrument(data, str(path))


def instrument_files(directories: Iterable[Path]) -> list[Path]:
    return sorted(p for d in directories for p in d.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load_catalog(extra_dir: str = "") -> Mapping[tuple[str, str], Instrument]:
    """Every instrument by (id, version): the shipped ones and those in ``extra_dir``. Raises
    InstrumentError on the first bad file, or when two files define the same instrument version."""
    directories = [SHIPPED]
    extra = extra_dir
    if extra:
        path = Path(extra)
        if not path.is_dir():
            raise InstrumentError(extra, ["SCREENING_INSTRUMENTS_DIR is not a directory"])
        directories.append(path)
    catalog: dict[tuple[str, str], Instrument] = {}
    sources: dict[tuple[str, str], Path] = {}
    for path in instrument_files(directories):
        instrument = read_instrument(path)
        if instrument.key in catalog:
            raise InstrumentError(
                str(path),
                [
                    f"{instrument.id} version {instrument.version} is already defined in "
                    f"{sources[instrument.key]}"
                ],
            )
        catalog[instrument.key] = instrument
        sources[instrument.key] = path
    return catalog
