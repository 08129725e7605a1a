"""A small demo data set for the local stack: a few CBO services in the directory, two fictional
residents (one consenting to share with CBOs), and their screenings from a clinic and a community
health worker that turn into referrals."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc
from ach.common.v1 import common_pb2
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach.funding.v1 import funding_pb2, funding_pb2_grpc
from ach.identity.v1 import identity_pb2, identity_pb2_grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_platform.codes import value_of
from ach_platform.dev_pki import DevPki
from ach_platform.grpc_client import partner_channel
from google.protobuf.timestamp_pb2 import Timestamp

T = TypeVar("T")

BACKBONE = "ach-backbone"  # the ACH's own organization: directory editor and network admin

SERVICES = [
    (
        "svc-food-pantry",
        "cbo-south-stockton-food",
        "Community Food Pantry",
        ["food-insecurity"],
        ["en", "es"],
        40,
    ),
    (
        "svc-housing-nav",
        "cbo-housing-partners",
        "Housing Navigation",
        ["housing-instability", "homelessness"],
        ["en", "es"],
        12,
    ),
    ("svc-rides", "cbo-ride-share", "Rides to Care", ["transportation-insecurity"], ["en"], 25),
    (
        "svc-utility-help",
        "cbo-energy-assist",
        "Utility Bill Assistance",
        ["utility-insecurity"],
        ["en", "es", "vi"],
        8,
    ),
    ("svc-safe-home", "cbo-safe-home", "Safe Home Advocacy", ["intimate-partner-violence"], ["en", "es"], 5),
]

# The demo CBOs (network partners that receive referrals): each runs one service above, and some
# organizations of the generated 2-1-1 directory are linked to them too.
DEMO_CBOS = [s[1] for s in SERVICES]

# Fictional residents: (partner's own id, given name, family name, birth date, phone, consent scope).
# The first consents to sharing with every CBO for every need; the second has not consented yet, so
# the network keeps its referrals as drafts ("consent-required") and shares nothing with a CBO.
RESIDENTS = [
    ("MRN-100234", "Ana", "Demo-Reyes", "1979-05-14", "209-555-0101", True),
    ("TB-0042", "Sam", "Demo-Nguyen", "1991-11-02", "", False),
]

# (question, answer) pairs of the AHC HRSN core: the first resident is worried about housing and food.
SCREENINGS = [
    (
        "clinic-st-marys",
        "es",
        [
            ("71802-3", "LA31994-9"),
            ("96778-6", "LA9-3"),
            ("88122-7", "LA6729-3"),
            ("88123-5", "LA28398-8"),
            ("93030-5", "LA32-8"),
            ("96779-4", "LA32-8"),
            ("95618-5", "LA6270-8"),
            ("95617-7", "LA6270-8"),
            ("95616-9", "LA6270-8"),
            ("95615-1", "LA6270-8"),
        ],
    ),
    (
        "chw-trustbuilders",
        "en",
        [
            ("71802-3", "LA31993-1"),
            ("96778-6", "LA9-3"),
            ("88122-7", "LA28398-8"),
            ("88123-5", "LA28398-8"),
            ("93030-5", "LA33-6"),
            ("96779-4", "LA32002-0"),
            ("95618-5", "LA6270-8"),
            ("95617-7", "LA10066-1"),
            ("95616-9", "LA6270-8"),
            ("95615-1", "LA6270-8"),
        ],
    ),
]


# Demo partners: (type, roles). The backbone is bootstrapped with every role.
PARTNER_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{s[1]: ("cbo", ("referral-target",)) for s in SERVICES},
    "clinic-st-marys": ("clinic", ("screener", "referral-source")),
    "chw-trustbuilders": ("cbo", ("screener", "referral-source")),
    "county-health": ("county", ("measurement-viewer",)),
    "wellness-fund": ("funder", ("fund-manager", "measurement-viewer")),
}
PARTNERS = sorted({BACKBONE, *PARTNER_ROLES})


def register_partners(pki: DevPki, identity_addr: str) -> list[str]:
    """Register the demo partners with the registry, as the backbone (idempotent)."""
    done: list[str] = []
    with partner_channel(
        identity_addr, pki.ca_cert, cert=pki.client_cert(BACKBONE), key=pki.client_key(BACKBONE)
    ) as channel:
        registry = identity_pb2_grpc.PartnerRegistryStub(channel)
        for partner_id, (type_code, roles) in PARTNER_ROLES.items():
            try:
                registry.RegisterPartner(
                    identity_pb2.RegisterPartnerRequest(
                        partner_id=partner_id,
                        name=partner_id,
                        type=value_of(identity_pb2.PartnerType, type_code),
                        roles=[value_of(identity_pb2.PartnerRole, r) for r in roles],
                    ),
                    timeout=10,
                )
                done.append(f"partner: {partner_id} ({type_code}: {', '.join(roles)})")
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                    raise
    return done


def retrying(call: Callable[[], T], within_s: float = 30) -> T:
    """Services learn of new partners (and residents) from the identity service's topics within
    moments: retry until then."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
            transient = code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE) or (
                # the screening service learns of a just-registered resident from the index's events
                code == grpc.StatusCode.INVALID_ARGUMENT and "register first" in details
            )
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def load(pki: DevPki, identity_addr: str, directory_addr: str, screening_addr: str) -> list[str]:
    """Load the demo data, each call made with its partner's client certificate; returns one line
    per thing done."""
    done: list[str] = []

    def as_partner(address: str, partner: str) -> grpc.Channel:
        return partner_channel(
            address, pki.ca_cert, cert=pki.client_cert(partner), key=pki.client_key(partner)
        )

    with as_partner(directory_addr, BACKBONE) as channel:
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        for service_id, org, name, domains, languages, capacity in SERVICES:
            upsert = directory_pb2.UpsertServiceRequest(
                service=directory_pb2.Service(
                    service_id=service_id,
                    organization_id=org,
                    name=name,
                    status=directory_pb2.SERVICE_STATUS_ACTIVE,
                    need_domains=domains,
                    languages=languages,
                    capacity_available=capacity,
                    capacity_maximum=capacity,
                )
            )
            retrying(functools.partial(directory.UpsertService, upsert, timeout=10))
            done.append(f"directory: {name} ({', '.join(domains)})")
    for (partner, language, answers), resident in zip(SCREENINGS, RESIDENTS, strict=True):
        mrn, given, family, born, phone, consents = resident
        with as_partner(identity_addr, partner) as channel:
            registered = retrying(
                functools.partial(
                    residents_pb2_grpc.ResidentIndexStub(channel).RegisterResident,
                    residents_pb2.RegisterResidentRequest(
                        partner_resident_id=mrn,
                        demographics=residents_pb2.Demographics(
                            given_name=given,
                            family_name=family,
                            birth_date=born,
                            phone=phone,
                            preferred_language=language,
                        ),
                    ),
                    timeout=10,
                )
            )
            resident_id = registered.resident_id
            if consents:
                residents_pb2_grpc.ConsentRegistryStub(channel).RecordConsent(
                    residents_pb2.RecordConsentRequest(
                        resident_id=resident_id, method=residents_pb2.CONSENT_METHOD_WRITTEN
                    ),
                    timeout=10,
                )
            done.append(
                f"resident {resident_id} registered by {partner}"
                f" ({'consents to share with CBOs' if consents else 'no consent yet'})"
            )
        with as_partner(screening_addr, partner) as channel:
            screening = screening_pb2_grpc.ScreeningServiceStub(channel)
            now = Timestamp()
            now.GetCurrentTime()
            request = screening_pb2.SubmitScreeningRequest(
                submitter_screening_id=f"demo-{uuid.uuid4()}",
                resident_id=resident_id,
                instrument_id="ahc-hrsn-core",
                instrument_version="1",
                screened_at=now,
                site_id=partner,
                language=language,
                answers=[screening_pb2.Answer(question_code=q, answer_codes=[a]) for q, a in answers],
            )
            request.screened_by.partner_id = partner
            result = retrying(functools.partial(screening.SubmitScreening, request, timeout=10))
            done.append(
                f"screening by {partner}: positive for {', '.join(result.positive_domains) or 'nothing'}"
            )
    return done


# The Wellness Fund's opening money (illustrative): contributions into the example streams of
# services/funding/ach_funding/funds.yaml, and the year's dues. Keys make a re-run change nothing.
CONTRIBUTIONS = (
    ("demo-health-plan-2026", "health-plan-reinvestment-2026", 15_000_000),
    ("demo-hospital-food-2026", "hospital-community-benefit-food", 4_000_000),
    ("demo-rapid-release-2026", "rapid-release-emergency", 2_500_000),
)
DUES = (("demo-dues-county-2026", "county-health", 2_500_000),)


def load_fund(pki: DevPki, funding_addr: str) -> list[str]:
    """Money into the fund through its API, as its fund manager (wellness-fund) would."""
    channel = partner_channel(
        funding_addr, pki.ca_cert, cert=pki.client_cert("wellness-fund"), key=pki.client_key("wellness-fund")
    )
    with channel:
        fund = funding_pb2_grpc.FundingServiceStub(channel)
        for key, stream, cents in CONTRIBUTIONS:
            gift = funding_pb2.RecordContributionRequest(
                idempotency_key=key, stream_id=stream, amount=common_pb2.Money(cents=cents, currency="USD")
            )
            retrying(functools.partial(fund.RecordContribution, gift, timeout=10))
        for key, partner, cents in DUES:
            dues = funding_pb2.InvoicePartnerRequest(
                idempotency_key=key,
                partner_id=partner,
                kind="dues",
                period="2026",
                amount=common_pb2.Money(cents=cents, currency="USD"),
            )
            retrying(functools.partial(fund.InvoicePartner, dues, timeout=10))
    total = sum(c for _, _, c in CONTRIBUTIONS) // 100
    return [
        f"funding: ${total:,} contributed into {len(CONTRIBUTIONS)} fund streams; "
        "dues invoiced to county-health"
    ]
