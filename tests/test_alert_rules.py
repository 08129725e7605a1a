"""The chart's alert rules with Debian's promtool: the rule files are valid (``check rules``), and
the alerts fire on the series that should raise them and not on healthy ones (``test rules``,
tests/data/alerts). Every expression is also evaluated on a live stack (test_walking_skeleton)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.harness import ROOT
from tests.prometheus import RULE_FILES

PROMTOOL = Path("/usr/bin/promtool")
UNIT_TESTS = sorted((ROOT / "tests" / "data" / "alerts").glob("*.test.yaml"))


def test_promtool_checks_the_rule_files() -> None:
    assert RULE_FILES, "no alert rule files in the chart"
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alerts_fire_on_the_series_that_should_raise_them(tmp_path: Path) -> None:
    for unit in UNIT_TESTS:
        spec = yaml.safe_load(unit.read_text())
        spec["rule_files"] = [str(p) for p in RULE_FILES]
        path = tmp_path / unit.name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        done = subprocess.run(
            [str(PROMTOOL), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
