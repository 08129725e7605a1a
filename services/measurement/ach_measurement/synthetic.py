"""A made-up network, seeded: residents, screenings, needs and referrals spread over groups and
months, with small groups on purpose. For tests, demonstrations and the benchmarks; never real data."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from ach_measurement.domain.facts import (
    Change,
    ChangeFacts,
    Demographics,
    Facts,
    FeedbackFacts,
    NeedFacts,
    ReferralFacts,
    Reroute,
    RerouteFacts,
    ScreeningFacts,
)

RACES = ["2106-3"] * 12 + ["2054-5"] * 6 + ["2028-9"] * 2 + ["1002-5"] + ["2076-8"]
DOMAINS = [
    "food-insecurity",
    "housing-instability",
    "transportation-insecurity",
    "utility-insecurity",
    "intimate-partner-violence",
]
PARTNERS = ["clinic-a"] * 6 + ["clinic-b"] * 3 + ["chw-c"]
CBOS = ["cbo-food", "cbo-housing", "cbo-ride"]
BANDS = ["0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"]
START = datetime(2026, 1, 1, 8, tzinfo=UTC)


def sample_facts(seed: int = 7, screenings: int = 600, months: int = 6, prefix: str = "") -> Facts:
    """``prefix`` starts every id, so several samples can be told apart (a benchmark makes many)."""
    rng = random.Random(seed)
    answers = random.Random(seed + 1)
    facts = Facts()
    residents = [f"{prefix}res-{i:04d}" for i in range(screenings * 2 // 3)]
    sequence = 0
    for i in range(screenings):
        resident = rng.choice(residents)
        at = START + timedelta(days=rng.uniform(0, 30.4 * months))
        sid = f"{prefix}scr-{i:05d}"
        partner = rng.choice(PARTNERS)
        race = rng.choice(RACES)
        races = (race,) if rng.random() > 0.05 else (race, "2106-3" if race != "2106-3" else "2054-5")
        facts.demographics[sid] = Demographics(
            race_codes=races if rng.random() > 0.08 else (),
            ethnicity_code=rng.choice(["2135-2", "2186-5", "2186-5", "2186-5", ""]),
            language=rng.choice(["en", "en", "en", "es", "es", "vi"]),
            age_band=rng.choice([*BANDS, ""]),
            zip=rng.choice(["95205", "95206", "95207"]),
            neighbourhood=rng.choice(["South Stockton", "Downtown", "North"]),
        )
        assessed = [d for d in DOMAINS if rng.random() > 0.1]
        positive = tuple(d for d in assessed if rng.random() < 0.25)
        negative = tuple(d for d in assessed if d not in positive)
        consented = rng.random() > 0.2
        facts.screenings.append(
            ScreeningFacts(
                sid,
                resident,
                partner,
                f"{partner}-site-{rng.randint(1, 2)}",
                at,
                positive,
                negative,
                consented,
            )
        )
        for d in positive:
            nid = f"need-{sid}-{d[:4]}"
            facts.needs.append(NeedFacts(nid, sid, resident, d, partner, at, consented))
            if not consented or rng.random() < 0.25:
                continue
            rid = f"ref-{sid}-{d[:4]}"
            created = at + timedelta(days=rng.choice([0, 0.5, 2, 5, 9, 20, 40]))
            target = rng.choice(CBOS)
            informational = rng.random() < 0.1
            facts.referrals.append(
                ReferralFacts(rid, resident, nid, sid, d, partner, target, created, informational)
            )
            if informational:
                continue
            t = created
            sequence = 0
            if rng.random() < 0.15:
                sequence += 1
                t += timedelta(hours=rng.uniform(1, 48))
                facts.changes.append(
                    ChangeFacts(
                        rid,
                        Change(sequence, "rejected", "", rng.choice(["no-capacity", "not-eligible"]), t),
                        target,
                    )
                )
                sequence += 1
                new_target = rng.choice([c for c in CBOS if c != target])
                facts.reroutes.append(
                    RerouteFacts(rid, Reroute(sequence, "no-capacity", t, new_target), target)
                )
                facts.changes.append(ChangeFacts(rid, Change(sequence, "requested", "", "", t), new_target))
                target = new_target
            if rng.random() < 0.8:
                sequence += 1
                t += timedelta(hours=rng.uniform(1, 120))
                facts.changes.append(ChangeFacts(rid, Change(sequence, "accepted", "", "", t), target))
                if rng.random() < 0.7:
                    sequence += 1
                    t += timedelta(days=rng.uniform(1, 100))
                    outcome = rng.choice(
                        ["need-met", "need-met", "need-met", "need-not-met", "unable-to-contact"]
                    )
                    facts.changes.append(
                        ChangeFacts(rid, Change(sequence, "completed", outcome, "", t), target)
                    )
                    # About half answer the question after closing (a stream of its own: the
                    # other facts stay as they were for a seed).
                    if answers.random() < 0.5:
                        got_help = answers.random() < (0.85 if outcome == "need-met" else 0.25)
                        facts.feedback.append(FeedbackFacts(rid, got_help, t + timedelta(hours=6)))
    return facts


def events_of(facts: Facts) -> list[tuple[str, str, Message]]:
    """The events that would have told the facts: (topic name, key, message), in no useful order."""
    from ach.notifications.v1 import notifications_pb2
    from ach.referrals.v1 import referrals_pb2
    from ach.screening.v1 import screening_pb2
    from ach_platform.clock import to_timestamp
    from ach_platform.codes import value_of

    screening_topic, demographics_topic, referral_topic = (
        "ach.screening.events.v1",
        "ach.screening.demographics.v1",
        "ach.referrals.events.v1",
    )
    events: list[tuple[str, str, Message]] = []
    residents = {r.referral_id: r.resident_id for r in facts.referrals}
    for s in facts.screenings:
        completed = screening_pb2.ScreeningCompleted(
            screening_id=s.screening_id,
            resident_id=s.resident_id,
            instrument_id="ahc-hrsn-core",
            instrument_version="1",
            positive_domains=list(s.positive),
            negative_domains=list(s.negative),
            site_id=s.site_id,
            screened_at=to_timestamp(s.screened_at),
            consent_id="consent" if s.consented else "",
        )
        completed.screened_by.partner_id = s.partner_id
        events.append((screening_topic, s.resident_id, completed))
        d = facts.demographics.get(s.screening_id)
        if d is not None:
            events.append(
                (
                    demographics_topic,
                    s.resident_id,
                    screening_pb2.ScreeningDemographicsRecorded(
                        screening_id=s.screening_id,
                        resident_id=s.resident_id,
                        site_id=s.site_id,
                        screened_at=to_timestamp(s.screened_at),
                        demographics=screening_pb2.Demographics(
                            race_codes=list(d.race_codes),
                            ethnicity_code=d.ethnicity_code,
                            preferred_language=d.language,
                            age_band=d.age_band,
                            zip=d.zip,
                            neighbourhood=d.neighbourhood,
                        ),
                    ),
                )
            )
    for n in facts.needs:
        events.append(
            (
                screening_topic,
                n.resident_id,
                screening_pb2.NeedIdentified(
                    need_id=n.need_id,
                    screening_id=n.screening_id,
                    resident_id=n.resident_id,
                    need_domain=n.need_domain,
                    identified_at=to_timestamp(n.identified_at),
                    source_partner_id=n.partner_id,
                    consent_id="consent" if n.consented else "",
                ),
            )
        )
    for r in facts.referrals:
        events.append(
            (
                referral_topic,
                r.referral_id,
                referrals_pb2.ReferralCreated(
                    referral_id=r.referral_id,
                    resident_id=r.resident_id,
                    need_domain=r.need_domain,
                    source_partner_id=r.source_partner_id,
                    target_partner_id=r.target_partner_id,
                    screening_id=r.screening_id,
                    need_id=r.need_id,
                    created_at=to_timestamp(r.created_at),
                    informational=r.informational,
                ),
            )
        )
    for c in facts.changes:
        change = referrals_pb2.ReferralStatusChanged(
            referral_id=c.referral_id,
            target_partner_id=c.target_partner_id,
            to_status=value_of(referrals_pb2.ReferralStatus, c.change.to_status),
            changed_at=to_timestamp(c.change.at),
            sequence=c.change.sequence,
            reason_code=c.change.reason_code,
        )
        if c.change.outcome:
            change.outcome = value_of(referrals_pb2.ReferralOutcome, c.change.outcome)
        events.append((referral_topic, c.referral_id, change))
    for f in facts.feedback:
        events.append(
            (
                "ach.notifications.events.v1",
                f.referral_id,
                notifications_pb2.ResidentFeedbackRecorded(
                    referral_id=f.referral_id,
                    resident_id=residents.get(f.referral_id, ""),
                    got_help=f.got_help,
                    asked_at=to_timestamp(f.answered_at),
                    answered_at=to_timestamp(f.answered_at),
                    channel="sms",
                ),
            )
        )
    for x in facts.reroutes:
        events.append(
            (
                referral_topic,
                x.referral_id,
                referrals_pb2.ReferralRerouted(
                    referral_id=x.referral_id,
                    from_target_partner_id=x.from_partner_id,
                    to_target_partner_id=x.reroute.to_partner_id,
                    rerouted_at=to_timestamp(x.reroute.at),
                    sequence=x.reroute.sequence,
                    reason_code=x.reroute.reason_code,
                ),
            )
        )
    return events
