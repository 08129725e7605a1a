"""The fund streams and outcome rates of ``funds.yaml`` (shipped) or ``FUNDING_FUNDS_FILE``. A
malformed file stops the service, naming the file and every problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ach_platform.data_files import DataFileError, read_data_file
from ach_platform.settings import ConfigError
from ach_platform.vocabulary import NEED_DOMAINS

from ach_funding.domain.community_bank import Share
from ach_funding.domain.disbursements import ApprovalPolicy
from ach_funding.domain.outcome_payments import Rate
from ach_funding.domain.streams import CostType, FundStream

SHIPPED = Path(__file__).parent / "funds.yaml"
MAX_FILE_BYTES = 256 * 1024
MAX_STREAMS = 500
MAX_RATES = 5000


@dataclass(frozen=True)
class FundCatalog:
    streams: tuple[FundStream, ...]
    rates: tuple[Rate, ...]
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    shares: tuple[Share, ...] = ()
    # year -> cost type -> cents
    budgets: dict[int, dict[CostType, int]] = field(default_factory=dict)

    def stream(self, stream_id: str) -> FundStream | None:
        return next((s for s in self.streams if s.stream_id == stream_id), None)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def text(self, row: dict[str, Any], key: str, where: str, limit: int = 200, required: bool = True) -> str:
        value = row.get(key, "")
        if not isinstance(value, str) or (required and not value) or len(value) > limit:
            self.items.append(
                f"{where}.{key}: {'is required, ' if required else ''}text of at most {limit} characters"
            )
            return ""
        return value

    def day(self, row: dict[str, Any], key: str, where: str, required: bool = True) -> date | None:
        value = row.get(key)
        if value is None and not required:
            return None
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.items.append(f"{where}.{key}: a date YYYY-MM-DD")
            return None

    def codes(
        self, row: dict[str, Any], key: str, where: str, allowed: frozenset[str] | None
    ) -> frozenset[str]:
        value = row.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 100 for v in value):
            self.items.append(f"{where}.{key}: a list of codes")
            return frozenset()
        unknown = sorted(set(value) - allowed) if allowed is not None else []
        if unknown:
            self.items.append(f"{where}.{key}: unknown {', '.join(unknown[:5])}")
        return frozenset(value)


def load_catalog(path: Path | None = None) -> FundCatalog:
    path = path or SHIPPED
    try:
        data = read_data_file(path, MAX_FILE_BYTES)
    except DataFileError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    p = _Problems()
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ConfigError(f"{path}: a mapping with version: 1, streams and rates")
    raw_streams, raw_rates = data.get("streams") or [], data.get("rates") or []
    if not isinstance(raw_streams, list) or len(raw_streams) > MAX_STREAMS:
        raise ConfigError(f"{path}: streams: a list of at most {MAX_STREAMS}")
    if not isinstance(raw_rates, list) or len(raw_rates) > MAX_RATES:
        raise ConfigError(f"{path}: rates: a list of at most {MAX_RATES}")
    streams: list[FundStream] = []
    for i, row in enumerate(raw_streams):
        where = f"streams[{i}]"
        if not isinstance(row, dict):
            p.items.append(f"{where}: a mapping")
            continue
        stream_id = p.text(row, "id", where, 100)
        starts, ends = p.day(row, "starts", where), p.day(row, "ends", where)
        share = row.get("share_percent", 100)
        if not isinstance(share, int) or isinstance(share, bool) or not 1 <= share <= 100:
            p.items.append(f"{where}.share_percent: a whole number from 1 to 100")
        if starts and ends and ends < starts:
            p.items.append(f"{where}.ends: before starts")
        cost_types = p.codes(row, "cost_types", where, frozenset(c.value for c in CostType))
        if not cost_types:
            p.items.append(f"{where}.cost_types: at least one")
        stream = FundStream(
            stream_id=stream_id,
            name_en=p.text(row, "name_en", where),
            name_es=p.text(row, "name_es", where),
            funder_partner_id=p.text(row, "funder", where, 100),
            starts=starts or date.min,
            ends=ends or date.min,
            cost_types=frozenset(CostType(c) for c in cost_types if c in CostType._value2member_map_),
            need_domains=p.codes(row, "need_domains", where, NEED_DOMAINS),
            geographies=p.codes(row, "geographies", where, None),
            share_percent=share if isinstance(share, int) else 100,
            pays_internal_referrals=bool(row.get("pays_internal_referrals", False)),
            reporting=p.text(row, "reporting", where, 500, required=False),
        )
        if any(s.stream_id == stream_id for s in streams):
            p.items.append(f"{where}.id: {stream_id} is defined twice")
        streams.append(stream)
    rates: list[Rate] = []
    for i, row in enumerate(raw_rates):
        where = f"rates[{i}]"
        if not isinstance(row, dict):
            p.items.append(f"{where}: a mapping")
            continue
        domain = p.text(row, "need_domain", where, 100)
        if domain and domain not in NEED_DOMAINS:
            p.items.append(f"{where}.need_domain: unknown {domain}")
        cents = row.get("cents")
        if not isinstance(cents, int) or isinstance(cents, bool) or not 0 < cents <= 10**9:
            p.items.append(f"{where}.cents: a positive whole number of cents")
            cents = 0
        starts, ends = p.day(row, "starts", where), p.day(row, "ends", where, required=False)
        rates.append(Rate(domain, cents, starts or date.min, ends))
    approvals = _approvals(data.get("approvals") or {}, p)
    shares = _shares(data.get("community_bank") or {}, p)
    budgets = _budgets(data.get("budgets") or [], p)
    if p.items:
        raise ConfigError(f"{path}: " + "; ".join(p.items))
    return FundCatalog(tuple(streams), tuple(rates), approvals, shares, budgets)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _approvals(raw: Any, p: _Problems) -> ApprovalPolicy:
    if not isinstance(raw, dict):
        p.items.append("approvals: a mapping")
        return ApprovalPolicy()
    required = raw.get("required", 2)
    ceiling = raw.get("rapid_release_ceiling_cents", 250_000)
    if not _whole(required, 1, 10):
        p.items.append("approvals.required: a whole number from 1 to 10")
        required = 2
    if not _whole(ceiling, 1, 10**11):
        p.items.append("approvals.rapid_release_ceiling_cents: a positive whole number of cents")
        ceiling = 250_000
    return ApprovalPolicy(required, ceiling)


def _shares(raw: Any, p: _Problems) -> tuple[Share, ...]:
    rows = raw.get("shares", []) if isinstance(raw, dict) else None
    if not isinstance(rows, list) or len(rows) > 200:
        p.items.append("community_bank.shares: a list of at most 200")
        return ()
    shares = []
    for i, row in enumerate(rows):
        where = f"community_bank.shares[{i}]"
        if not isinstance(row, dict):
            p.items.append(f"{where}: a mapping")
            continue
        partner = p.text(row, "partner", where, 100)
        points = row.get("basis_points")
        if not _whole(points, 1, 10_000):
            p.items.append(f"{where}.basis_points: a whole number from 1 to 10000")
            continue
        shares.append(Share(partner, int(points or 0)))
    if shares and sum(s.basis_points for s in shares) != 10_000:
        p.items.append("community_bank.shares: the basis points add up to 10000")
    if len({s.partner_id for s in shares}) != len(shares):
        p.items.append("community_bank.shares: a partner appears twice")
    return tuple(shares)


def _budgets(raw: Any, p: _Problems) -> dict[int, dict[CostType, int]]:
    if not isinstance(raw, list) or len(raw) > 50:
        p.items.append("budgets: a list of at most 50 years")
        return {}
    budgets: dict[int, dict[CostType, int]] = {}
    for i, row in enumerate(raw):
        where = f"budgets[{i}]"
        if (
            not isinstance(row, dict)
            or not _whole(row.get("year"), 2000, 2100)
            or not isinstance(row.get("lines"), list)
        ):
            p.items.append(f"{where}: a year (2000-2100) and its lines")
            continue
        lines: dict[CostType, int] = {}
        for j, line in enumerate(row["lines"][:100]):
            kind = line.get("cost_type") if isinstance(line, dict) else None
            cents = line.get("cents") if isinstance(line, dict) else None
            if kind not in CostType._value2member_map_ or not _whole(cents, 0, 10**13):
                p.items.append(f"{where}.lines[{j}]: a cost type and a whole number of cents")
                continue
            lines[CostType(kind)] = lines.get(CostType(kind), 0) + int(cents)  # type: ignore[arg-type]
        if row["year"] in budgets:
            p.items.append(f"{where}.year: {row['year']} has a budget already")
        budgets[int(row["year"])] = lines
    return budgets
