"""What the measurement service publishes: right figures, the same whatever order facts came in,
and no suppressed cell recoverable from everything published (an attacker solving for them)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
from ach_measurement.catalog import load_measures
from ach_measurement.domain.definitions import Calculation, Measure
from ach_measurement.domain.facts import (
    Demographics,
    Facts,
    NeedFacts,
    ReferralFacts,
    ScreeningFacts,
    assemble,
)
from ach_measurement.domain.publication import TOTAL, Publication, publish
from ach_measurement.domain.suppression import Row, Status, Table, TableKey, decide, small
from ach_measurement.publications import scoped
from ach_measurement.synthetic import sample_facts

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 7, 15, tzinfo=UTC)


def _published(facts: Facts, now: datetime = NOW) -> Publication:
    return publish(load_measures(), assemble(facts), LA, now)


def test_a_small_network_by_hand() -> None:
    """24 screenings in March: 11 at clinic-a, 1 at clinic-b, 12 at clinic-c. clinic-b's 1 is hidden;
    hiding clinic-a with it would not do (clinic-a knows its 11 and would take clinic-b's 1 back from
    the total), so all three partners are hidden and the total shown."""
    at = datetime(2026, 3, 10, 17, tzinfo=UTC)
    facts = Facts()
    for i in range(24):
        partner = "clinic-a" if i < 11 else "clinic-b" if i == 11 else "clinic-c"
        facts.screenings.append(
            ScreeningFacts(f"s{i}", f"r{i}", partner, "", at, ("food-insecurity",), (), True)
        )
        facts.needs.append(NeedFacts(f"n{i}", f"s{i}", f"r{i}", "food-insecurity", partner, at, True))
        facts.demographics[f"s{i}"] = Demographics(age_band="25-34")
    for i in range(3):
        created = at + timedelta(days=i * 5)  # 0, 5 and 10 days: two within 7 days
        facts.referrals.append(
            ReferralFacts(
                f"f{i}", f"r{i}", f"n{i}", f"s{i}", "food-insecurity", "clinic-a", "cbo", created, False
            )
        )
    p = _published(facts, now=datetime(2026, 5, 1, tzinfo=UTC))
    screenings = {x.period.label: x for x in p.measures["screenings"].periods}
    march = screenings["2026-03"]
    assert march.total.status is Status.FREE and march.total.value == 24 and not march.provisional
    partners = {f.group: f for f in march.groups["partner"]}
    assert partners["clinic-b"].status is Status.PRIMARY and partners["clinic-b"].value is None
    assert partners["clinic-a"].status is Status.SECONDARY and partners["clinic-a"].numerator is None
    assert partners["clinic-c"].status is Status.SECONDARY
    # The same group's referral counts that month are small, and a group hidden in one measure is
    # hidden in every measure broken down the same way.
    ages = {f.group: f for f in march.groups["age_band"]}
    assert ages["25-34"].status is Status.SECONDARY and ages["25-34"].value is None
    referred = {x.period.label: x for x in p.measures["referred-within-7-days"].periods}["2026-03"]
    assert referred.total.status is Status.PRIMARY and referred.total.value is None  # 2 of 24
    # 1 May 00:00 UTC is still 30 April in the network's time zone.
    assert {x.period.label for x in p.measures["screenings"].periods} == {"2026-03", "2026-04"}
    # With two partners only, the one that knows its own could always take the other's back: the
    # total is hidden as well.
    facts.screenings[:] = [s for s in facts.screenings if s.partner_id != "clinic-c"]
    two = {
        x.period.label: x
        for x in _published(facts, now=datetime(2026, 5, 1, tzinfo=UTC)).measures["screenings"].periods
    }
    assert two["2026-03"].total.status is Status.SECONDARY and two["2026-03"].total.value is None


def test_figures_do_not_depend_on_the_order_facts_arrived_in() -> None:
    facts = sample_facts()
    shuffled = Facts(
        screenings=random.Random(1).sample(facts.screenings, len(facts.screenings)),
        demographics=dict(random.Random(2).sample(list(facts.demographics.items()), len(facts.demographics))),
        needs=random.Random(3).sample(facts.needs, len(facts.needs)),
        referrals=random.Random(4).sample(facts.referrals, len(facts.referrals)),
        changes=random.Random(5).sample(facts.changes, len(facts.changes)),
        reroutes=random.Random(6).sample(facts.reroutes, len(facts.reroutes)),
        feedback=random.Random(7).sample(facts.feedback, len(facts.feedback)),
    )
    assert facts.feedback
    assert _published(facts) == _published(shuffled)


def test_a_late_event_lands_in_its_own_period() -> None:
    facts = sample_facts()
    before = _published(facts)
    late = datetime(2026, 2, 14, 20, tzinfo=UTC)
    facts.screenings.append(ScreeningFacts("late", "res-late", "clinic-a", "", late, (), (), False))
    after = _published(facts)
    totals = {
        name: {p.period.label: p.total.numerator for p in publication.measures["screenings"].periods}
        for name, publication in (("b", before), ("a", after))
    }
    assert totals["a"]["2026-02"] == (totals["b"]["2026-02"] or 0) + 1
    assert {k: v for k, v in totals["a"].items() if k != "2026-02"} == {
        k: v for k, v in totals["b"].items() if k != "2026-02"
    }


def test_measures_count_what_they_say() -> None:
    facts = sample_facts(screenings=2400)  # enough for January's figures to be shown
    units = assemble(facts)
    p = publish(load_measures(), units, LA, NOW)
    january = {m: next(x for x in f.periods if x.period.label == "2026-01") for m, f in p.measures.items()}
    in_january = [
        s for s in units.screenings if s.at.astimezone(LA).month == 1 and s.at.astimezone(LA).year == 2026
    ]
    assert january["screenings"].total.numerator == len(in_january)
    assert january["funnel-1-screened"].total.numerator == len(in_january)
    assert january["funnel-2-has-need"].total.numerator == sum(1 for s in in_january if s.positive)
    stages = [
        january[f"funnel-{i}-{s}"].total.numerator
        for i, s in enumerate(
            ["screened", "has-need", "consents", "referral-placed", "accepted", "need-met"], 1
        )
    ]
    assert all(a >= b for a, b in pairwise(stages) if a is not None and b is not None)
    needs = [n for n in units.needs if n.at.astimezone(LA).month == 1 and n.at.astimezone(LA).year == 2026]
    within = sum(
        1 for n in needs if any(not r.informational and r.at - n.at <= timedelta(days=7) for r in n.referrals)
    )
    seven = january["referred-within-7-days"].total
    assert (seven.numerator, seven.denominator) == (within, len(needs))
    assert (
        seven.value == within / len(needs) * 100
        and seven.low is not None
        and seven.high is not None
        and seven.low < seven.value < seven.high
    )
    accepted = [
        r for r in units.referrals if not r.informational and r.accepted_at and r.at.astimezone(LA).month == 1
    ]
    days = sorted((r.accepted_at - r.at).total_seconds() / 86400 for r in accepted if r.accepted_at)
    assert january["median-days-to-acceptance"].total.value == np.median(days)


def _variables(measure: Measure) -> list[str]:
    return ["n", "d"] if measure.calculation is Calculation.RATIO else ["n"]


def _signature(measure: Measure) -> tuple[object, ...]:
    """Measures counting the same units share unknowns: an attacker would notice they are equal."""
    s = measure.counted
    return (
        s.kind,
        s.distinct_residents,
        frozenset(s.where),
        s.filter,
        measure.value if measure.calculation is Calculation.MEDIAN else "",
    )


def test_no_suppressed_cell_can_be_recovered_from_everything_published() -> None:
    """The attacker: every count published (totals, groups, funnel stages, numerators and
    denominators) as linear equations over the hidden ones; a hidden count is recovered when the
    equations determine it. None may be."""
    for seed in (7, 11, 23):
        facts = sample_facts(seed=seed, screenings=420)
        measures = [m for m in load_measures() if not m.imported]
        p = publish(measures, assemble(facts), LA, NOW)
        index: dict[tuple[object, ...], int] = {}
        equations: list[tuple[dict[int, int], int]] = []
        known: dict[int, int] = {}
        hidden_cells: list[int] = []

        def var(key: tuple[object, ...], index: dict[tuple[object, ...], int] = index) -> int:
            return index.setdefault(key, len(index))

        for m in measures:
            sig = _signature(m)
            for pf in p.measures[m.id].periods:
                for q in _variables(m):
                    total = var((sig, pf.period.label, TOTAL, TOTAL, q))
                    value = pf.total.numerator if q == "n" else pf.total.denominator
                    if value is not None:
                        known[total] = value
                    elif pf.total.status is Status.PRIMARY:
                        hidden_cells.append(total)
                    for dimension, figures in pf.groups.items():
                        terms: dict[int, int] = defaultdict(int)
                        for f in figures:
                            cell = var((sig, pf.period.label, dimension, f.group, q))
                            terms[cell] += 1
                            value = f.numerator if q == "n" else f.denominator
                            if value is not None:
                                known[cell] = value
                            elif f.status is Status.PRIMARY:
                                hidden_cells.append(cell)
                        if not m.counted.distinct_residents:  # groups add up to the total
                            terms[total] -= 1
                            equations.append((terms, 0))
        # Known values leave the equations; what remains links hidden counts only. Each connected
        # set of hidden counts is solved on its own (a hidden count is recovered when its unit
        # vector lies in the row space of the equations).
        parent = list(range(len(index)))

        def root(i: int, parent: list[int] = parent) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        unknown_rows = []
        for terms, _ in equations:
            hidden = [c for c, k in terms.items() if k and c not in known]
            if hidden:
                unknown_rows.append({c: terms[c] for c in hidden})
                for c in hidden[1:]:
                    parent[root(c)] = root(hidden[0])
        by_component: dict[int, list[dict[int, int]]] = defaultdict(list)
        for row in unknown_rows:
            by_component[root(next(iter(row)))].append(row)
        assert hidden_cells, "the sample must have small cells"
        for cell in set(hidden_cells):
            rows = by_component.get(root(cell), [])
            columns = sorted({c for r in rows for c in r} | {cell})
            where = {c: i for i, c in enumerate(columns)}
            a = np.zeros((len(rows), len(columns)))
            for i, r in enumerate(rows):
                for c, k in r.items():
                    a[i, where[c]] = k
            probe = np.zeros((1, len(columns)))
            probe[0, where[cell]] = 1
            rank = np.linalg.matrix_rank(a) if rows else 0
            assert np.linalg.matrix_rank(np.vstack([a, probe])) > rank, (
                f"recoverable: {next(k for k, v in index.items() if v == cell)}"
            )


def test_no_small_difference_between_nested_counts_can_be_worked_out() -> None:
    """The attacker again, on differences: where one published count nests in another (adults among
    all screenings, a stage of the funnel in the stage before), their difference for a group is a
    count of its own, and must not be worked out when it is 1 to 10."""
    from ach_measurement.domain import publication as pub

    facts = sample_facts(seed=13, screenings=900)
    units = assemble(facts)
    measures = [m for m in load_measures() if not m.imported]
    p = publish(measures, units, LA, NOW)
    raw = {m.id: pub._tally(m, units, LA) for m in measures}
    counted = [
        (m, pub._signature(m.counted, m.value if m.calculation is Calculation.MEDIAN else ""))
        for m in measures
    ]
    pairs = [(a, b) for a, sa in counted for b, sb in counted if pub._within(sa, sb)]
    assert len(pairs) > 10
    checked = 0
    for a, b in pairs:
        shown_a = {pf.period.label: pf for pf in p.measures[a.id].periods}
        for pf_b in p.measures[b.id].periods:
            pf_a = shown_a.get(pf_b.period.label)
            if pf_a is None:
                continue
            cells = [
                ("", pf_a.total, pf_b.total, raw[a.id][0].get(pf_a.period), raw[b.id][0].get(pf_b.period))
            ]
            for d in set(pf_a.groups) & set(pf_b.groups):
                fb = {f.group: f for f in pf_b.groups[d]}
                for f in pf_a.groups[d]:
                    if f.group in fb:
                        key = (pf_a.period, d, f.group)
                        cells.append((f.group, f, fb[f.group], raw[a.id][1].get(key), raw[b.id][1].get(key)))
            for _group, fa, fb_, ca, cb in cells:
                if ca is None or cb is None:
                    continue
                difference = pub._counts(b, cb)[0] - pub._counts(a, ca)[0]
                if 0 < difference <= 10 and fa.numerator is not None and fb_.numerator is not None:
                    raise AssertionError(f"{b.id} - {a.id} = {difference} in {pf_a.period.label} is shown")
                checked += 1
    assert checked > 1000


def test_hidden_cells_never_add_up_to_a_small_number() -> None:
    facts = sample_facts(seed=5)
    p = _published(facts)
    units = assemble(facts)
    raw = publish(load_measures(), units, LA, NOW)  # the same publication: raw counts are never kept
    assert raw == p
    # Check through the decision directly, on tables built from the same tallies.
    rows = (Row("a", (3, 40, 37)), Row("b", (30, 50, 20)), Row("c", (25, 28, 3)), Row("d", (60, 90, 30)))
    table = Table(TableKey("m", "2026-01", "race"), Row("", (118, 208, 90)), rows)
    decision = decide([table], frozenset())
    hidden = [r for r in rows if decision.groups[table.key][r.group] is not Status.FREE]
    assert {r.group for r in hidden} >= {"a", "c"}
    for i in range(3):
        assert not small(sum(r.quantities[i] for r in hidden))


def test_a_partner_knowing_its_own_cell_recovers_nothing() -> None:
    rows = (Row("clinic-a", (50,)), Row("clinic-b", (5,)), Row("clinic-c", (40,)))
    table = Table(TableKey("m", "2026-01", "partner"), Row("", (95,)), rows)
    decision = decide([table], frozenset({"partner"}))
    statuses = decision.groups[table.key]
    # Hiding b with a alone would let clinic-a (knowing its 50) take b back from the total.
    assert all(s is not Status.FREE for s in statuses.values())
    hidden_total = decide(
        [Table(TableKey("m", "2026-01", "partner"), Row("", (55,)), rows[:2])], frozenset({"partner"})
    )
    assert hidden_total.total[TableKey("m", "2026-01", "partner")] is Status.SECONDARY


def test_a_partner_sees_only_what_it_is_party_to() -> None:
    units = assemble(sample_facts())
    mine = scoped(units, "clinic-b")
    assert mine.screenings and all(s.partner_id == "clinic-b" for s in mine.screenings)
    assert all("clinic-b" in (r.source_partner_id, r.target_partner_id) for r in mine.referrals)
    assert len(mine.screenings) < len(units.screenings)
    cbo = scoped(units, "cbo-food")
    assert (
        not cbo.screenings
        and cbo.referrals
        and all(r.target_partner_id == "cbo-food" or r.source_partner_id == "cbo-food" for r in cbo.referrals)
    )


def test_one_hidden_row_gets_a_complement_and_the_total_stays() -> None:
    rows = (Row("a", (3,)), Row("b", (50,)), Row("c", (60,)))
    key = TableKey("m", "2026-01", "language")
    decision = decide([Table(key, Row("", (113,)), rows)], frozenset())
    assert decision.total[key] is Status.FREE
    assert decision.groups[key] == {"a": Status.PRIMARY, "b": Status.SECONDARY, "c": Status.FREE}


def test_a_group_hidden_in_one_measure_is_hidden_in_the_others_of_that_month() -> None:
    """Positive screens (a count) and the screen-positive rate's numerator are the same number."""
    counts = Table(
        TableKey("positive", "2026-01", "race"),
        Row("", (70,)),
        (Row("x", (4,)), Row("y", (30,)), Row("z", (36,))),
    )
    rate = Table(
        TableKey("rate", "2026-01", "race"),
        Row("", (70, 300, 230)),
        (Row("x", (4, 40, 36)), Row("y", (30, 100, 70)), Row("z", (36, 160, 124))),
    )
    other = Table(
        TableKey("screenings", "2026-01", "race"),
        Row("", (300,)),
        (Row("x", (40,)), Row("y", (100,)), Row("z", (160,))),
    )
    decision = decide([counts, rate, other], frozenset())
    hidden = {
        t: {g for g, s in decision.groups[t.key].items() if s is not Status.FREE}
        for t in (counts, rate, other)
    }
    assert hidden[counts] == hidden[rate] == hidden[other] == {"x", "y"}


def test_the_residents_own_word_is_counted_beside_the_cbos_outcome() -> None:
    """Of the referrals handed off in a month whose resident answered the question after closing,
    the share who said they got the help they needed; one answer per referral."""
    from ach_measurement.domain.facts import FeedbackFacts
    from ach_measurement.domain.periods import PeriodKind, period_of

    facts = sample_facts(seed=3, screenings=3000, months=3)
    first = facts.feedback[0]
    later = first.answered_at + timedelta(days=1)
    facts.feedback.append(FeedbackFacts(first.referral_id, not first.got_help, later))  # answered again
    answers = {f.referral_id: f.got_help for f in reversed(facts.feedback)}  # the first answer counts
    asked: dict[str, list[bool]] = defaultdict(list)
    for r in facts.referrals:
        if not r.informational and r.referral_id in answers:
            asked[period_of(r.created_at, PeriodKind.MONTH, LA).label].append(answers[r.referral_id])
    shown = {
        p.period.label: p.total
        for p in _published(facts).measures["residents-say-they-got-help"].periods
        if p.total.status is Status.FREE and p.total.value is not None
    }
    assert len(shown) >= 2
    for label, total in shown.items():
        assert (total.numerator, total.denominator) == (sum(asked[label]), len(asked[label]))
        assert total.value == sum(asked[label]) / len(asked[label]) * 100
