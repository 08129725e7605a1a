"""The instruments this service knows: the data files shipped in ``ach_screening/instruments/`` and
any in ``SCREENING_INSTRUMENTS_DIR``. A new instrument is a new file, not new code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ach_platform.data_files import DataFileError, data_files, read_data_file

from ach_screening.domain import Instrument, InstrumentError, parse_instrument

SHIPPED = Path(__file__).parent / "instruments"


def read_instrument(path: Path) -> Instrument:
    """One instrument file; InstrumentError names the file and every problem in it."""
    try:
        data = read_data_file(path)
    except DataFileError as exc:
        raise InstrumentError(str(path), [str(exc)]) from None
    return parse_instrument(data, str(path))


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
    for path in data_files(directories):
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
