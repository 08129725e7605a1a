"""Community data read as published: County Health Rankings' analytic CSV, CDC PLACES' long format
and a plain long CSV; every bad row reported by file, row and column, and nothing half-read."""

from __future__ import annotations

import re

import pytest
from ach_measurement.domain.indicators import (
    IndicatorCodes,
    IndicatorFileError,
    IndicatorFormat,
    read_indicators,
)

CODES = [
    IndicatorCodes("premature-death", chr="v001", places=""),
    IndicatorCodes("food-insecurity-rate", chr="v139"),
    IndicatorCodes("uninsured-adults", places="ACCESS2"),
]
PLACES = frozenset({"26075", "06077", "95205", "95206", "south-stockton"})

CHR = (
    "State FIPS Code,County FIPS Code,5-digit FIPS Code,State Abbreviation,Name,Release Year,"
    "Premature Death raw value,Premature Death numerator,Premature Death denominator,Premature Death CI low,"
    "Premature Death CI high,Premature Death (Black),Premature Death (White),Food Insecurity raw value\n"
    "statecode,countycode,fipscode,state,county,year,v001_rawvalue,v001_numerator,v001_denominator,v001_cilow,"
    "v001_cihigh,v001_race_black,v001_race_white,v139_rawvalue\n"
    "26,075,26075,MI,Jackson County,2024,8712.4,3391,380010,8201.1,9223.7,15840.2,7954.3,0.131\n"
    "06,077,06077,CA,San Joaquin County,2024,7689.0,8921,1140300,7512.2,7865.8,,,0.112\n"
)


def test_county_health_rankings_analytic_file() -> None:
    values = read_indicators(CHR, IndicatorFormat.CHR, CODES, PLACES, "chr.csv")
    by_key = {v.key: v for v in values}
    jackson = by_key[("premature-death", "26075", "2024", "")]
    assert (jackson.value, jackson.numerator, jackson.denominator, jackson.low, jackson.high) == (
        8712.4,
        3391,
        380010,
        8201.1,
        9223.7,
    )
    assert by_key[("premature-death", "26075", "2024", "black-or-african-american")].value == 15840.2
    assert ("premature-death", "06077", "2024", "white") not in by_key  # left out where suppressed
    assert by_key[("food-insecurity-rate", "06077", "2024", "")].value == 0.112
    assert jackson.source == "County Health Rankings & Roadmaps"


def test_places_long_format_keeps_only_the_networks_measures() -> None:
    text = (
        "Year,StateAbbr,LocationName,LocationID,MeasureId,Data_Value_Type,Data_Value,Low_Confidence_Limit,"
        "High_Confidence_Limit,TotalPopulation\n"
        "2022,CA,San Joaquin,06077,ACCESS2,Age-adjusted prevalence,11.9,10.2,13.8,789410\n"
        "2022,CA,San Joaquin,06077,CSMOKING,Age-adjusted prevalence,14.1,12.0,16.3,789410\n"
    )
    (value,) = read_indicators(text, IndicatorFormat.PLACES, CODES, PLACES, "places.csv")
    assert (value.indicator, value.value, value.low, value.high) == ("uninsured-adults", 11.9, 10.2, 13.8)
    assert value.source == "CDC PLACES (Age-adjusted prevalence)"


def test_every_bad_row_is_named_and_nothing_is_read() -> None:
    text = (
        "indicator,geography,period,value,numerator,denominator,interval,source\n"
        "premature-death,26075,2023,8700,3300,380000,8200-9200,CHR\n"
        "premature-death,99999,2023,8700,,,,CHR\n"
        "premature-death,26075,2023,n/a,,,,CHR\n"
        "premature-death,06077,2023,7000,500,400,,CHR\n"
        "premature-death,26075,2023,8800,,,,CHR\n"
        "shoe-size,26075,2023,42,,,,CHR\n"
        "premature-death,06077,23,7000,,,,CHR\n"
        "premature-death,06077,2022,7000,,,9-8,CHR\n"
    )
    with pytest.raises(IndicatorFileError) as caught:
        read_indicators(text, IndicatorFormat.LONG, CODES, PLACES, "long.csv")
    assert [str(p) for p in caught.value.problems] == [
        "row 3, column geography: is not a geography of the network",
        "row 4, column value: is not a number",
        "row 5, column numerator: is above its denominator",
        "row 6, column value: premature-death for 26075 in 2023 differs from row 2",
        "row 7, column indicator: is not a population indicator of the network",
        "row 8, column period: is not a year (YYYY)",
        "row 9, column interval: the interval's low end is above its high end",
    ]
    assert str(caught.value).startswith("long.csv: row 3, column geography")


def test_a_missing_column_and_oversized_fields() -> None:
    with pytest.raises(IndicatorFileError, match="row 1, column value: the column is missing"):
        read_indicators("indicator,geography,period\n", IndicatorFormat.LONG, CODES, PLACES, "x.csv")
    text = "indicator,geography,period,value\npremature-death,26075,2023," + "9" * 500 + "\n"
    with pytest.raises(IndicatorFileError, match="row 2, column value: is longer than 200 characters"):
        read_indicators(text, IndicatorFormat.LONG, CODES, PLACES, "x.csv")
    with pytest.raises(IndicatorFileError, match=re.escape("x.csv: file: is empty")):
        read_indicators("", IndicatorFormat.LONG, CODES, PLACES, "x.csv")
