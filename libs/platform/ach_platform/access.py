"""Who may call what: the one access policy of the platform, enforced by one interceptor.

A rule names the roles that may call a method outright, and the roles that may call it for what is
their own (a screening they submitted, a referral they are party to, their own organization's
directory entries or payable account). Ownership of stored things is answered by the owning
service through a resolver; the decision is made here. Methods without a rule are refused.

Unknown partners are PERMISSION_DENIED; a suspended partner's credentials count as revoked
(UNAUTHENTICATED).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from ach_platform.auth import OPEN_METHODS, principal
from ach_platform.errors import PermissionDenied, Unauthenticated

ANY = "*"  # any active partner of the network


@dataclass(frozen=True)
class PartnerView:
    partner_id: str
    type: str
    roles: frozenset[str]
    active: bool
    version: int = 0
    name: str = ""  # as registered: what a resident's message calls the organization
    revoked_certificates: frozenset[str] = frozenset()  # serials, lowercase hex


class PartnerLookup(Protocol):
    def get(self, partner_id: str) -> PartnerView | None: ...


class PartnerRoster(PartnerLookup, Protocol):
    def holding(self, role: str) -> set[str]:
        """The active partners that hold a role."""
        ...


# Given a resource id, the partners it belongs to; None when there is no such resource (the handler
# then answers NOT_FOUND itself).
OwnerResolver = Callable[[str], Awaitable[set[str] | None]]


def field_value(request: Message, path: str) -> str:
    value: Any = request
    for part in path.split("."):
        value = getattr(value, part)
    return str(value)


@dataclass(frozen=True)
class RequestNamesCaller:
    """A field of the request must name the caller (e.g. the partner a screening is submitted by)."""

    path: str
    template: str = "{caller}"

    async def holds(self, caller: str, request: Message, resolvers: Mapping[str, OwnerResolver]) -> bool:
        return field_value(request, self.path) == self.template.format(caller=caller)


@dataclass(frozen=True)
class PartyTo:
    """The stored resource the request addresses must belong to the caller."""

    resource: str
    id_path: str
    missing_ok: bool = True  # no such resource: the handler says NOT_FOUND (or creates it)

    async def holds(self, caller: str, request: Message, resolvers: Mapping[str, OwnerResolver]) -> bool:
        resource_id = field_value(request, self.id_path)
        owners = await resolvers[self.resource](resource_id) if resource_id else None
        if owners is None:
            return self.missing_ok
        return caller in owners


@dataclass(frozen=True)
class AllOf:
    checks: tuple[RequestNamesCaller | PartyTo, ...]

    async def holds(self, caller: str, request: Message, resolvers: Mapping[str, OwnerResolver]) -> bool:
        for check in self.checks:
            if not await check.holds(caller, request, resolvers):
                return False
        return True


Ownership = RequestNamesCaller | PartyTo | AllOf


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str] = frozenset()
    owner_roles: frozenset[str] = frozenset()
    owner: Ownership | None = None
    # Resident-level data: every call is audited, with these request fields as the ids it touched
    # and the purpose of use a caller gives (x-ach-purpose-of-use) or this default.
    audit_ids: tuple[str, ...] = field(default_factory=tuple)
    purpose: str = "COC"

    @property
    def audited(self) -> bool:
        return bool(self.audit_ids)

    def has_role(self, partner: PartnerView, roles: frozenset[str]) -> bool:
        return ANY in roles or bool(roles & partner.roles)


def _r(*roles: str) -> frozenset[str]:
    return frozenset(roles)


POLICY: dict[str, Rule] = {
    # Screening intake: a screener submits in its own name and reads what it submitted.
    "/ach.screening.v1.ScreeningService/SubmitScreening": Rule(
        owner_roles=_r("screener"),
        owner=RequestNamesCaller("screened_by.partner_id"),
        audit_ids=("resident_id", "submitter_screening_id"),
        purpose="TREAT",
    ),
    "/ach.screening.v1.ScreeningService/ImportQuestionnaireResponse": Rule(
        owner_roles=_r("screener"),
        owner=RequestNamesCaller("screened_by.partner_id"),
        audit_ids=("resident_id", "submitter_screening_id"),
        purpose="TREAT",
    ),
    "/ach.screening.v1.ScreeningService/GetScreening": Rule(
        owner_roles=_r("screener", "referral-source"),
        owner=PartyTo("screening", "screening_id"),
        audit_ids=("screening_id",),
        purpose="TREAT",
    ),
    # A resident's screenings (no answers) and needs over time: the partners with the resident on
    # their books, and the backbone.
    "/ach.screening.v1.ScreeningService/ListResidentScreenings": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("screener", "referral-source"),
        owner=PartyTo("resident", "resident_id"),
        audit_ids=("resident_id",),
        purpose="TREAT",
    ),
    # Instrument definitions are forms, not resident data: every partner may read them.
    "/ach.screening.v1.ScreeningService/ListInstruments": Rule(roles=_r(ANY)),
    # Referrals: only the source and the target of a referral see it or move it on.
    "/ach.referrals.v1.ReferralService/GetReferral": Rule(
        owner_roles=_r("referral-source", "referral-target"),
        owner=PartyTo("referral", "referral_id"),
        audit_ids=("referral_id",),
    ),
    "/ach.referrals.v1.ReferralService/ListReferrals": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("referral-source", "referral-target"),
        owner=RequestNamesCaller("partner_id"),
        audit_ids=("partner_id", "screening_id"),
    ),
    "/ach.referrals.v1.ReferralService/UpdateReferralStatus": Rule(
        owner_roles=_r("referral-source", "referral-target"),
        owner=PartyTo("referral", "referral_id"),
        audit_ids=("referral_id",),
    ),
    "/ach.referrals.v1.ReferralService/CreateReferral": Rule(
        roles=_r("referral-source"), audit_ids=("resident_id",), purpose="TREAT"
    ),
    "/ach.referrals.v1.ReferralService/GetReferralHistory": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("referral-source", "referral-target"),
        owner=PartyTo("referral", "referral_id"),
        audit_ids=("referral_id",),
    ),
    "/ach.referrals.v1.ReferralService/ExportReferralFhir": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("referral-source", "referral-target"),
        owner=PartyTo("referral", "referral_id"),
        audit_ids=("referral_id",),
    ),
    # The referral is named inside the Task: the handler checks the caller is its party.
    "/ach.referrals.v1.ReferralService/UpdateReferralFromFhirTask": Rule(
        roles=_r("referral-source", "referral-target")
    ),
    # Choosing another target is the source's: the target that turned it down has no say.
    "/ach.referrals.v1.ReferralService/ProposeTargets": Rule(
        owner_roles=_r("referral-source"),
        owner=PartyTo("referral-source", "referral_id"),
        audit_ids=("referral_id",),
    ),
    "/ach.referrals.v1.ReferralService/RerouteReferral": Rule(
        owner_roles=_r("referral-source"),
        owner=PartyTo("referral-source", "referral_id"),
        audit_ids=("referral_id",),
    ),
    # Directory: directory editors edit anything; a CBO edits its own organization's services.
    "/ach.directory.v1.DirectoryService/UpsertService": Rule(
        roles=_r("directory-editor"),
        owner_roles=_r("referral-target"),
        owner=AllOf(
            (RequestNamesCaller("service.organization_id"), PartyTo("service", "service.service_id"))
        ),
    ),
    # Which organization is which partner decides who receives referrals: the ACH admin's call.
    "/ach.directory.v1.DirectoryService/LinkOrganization": Rule(roles=_r("ach-admin")),
    # What a partner claims its own services serve routes nothing until the ACH admin approves it.
    "/ach.directory.v1.DirectoryService/ListNeedDomainClaims": Rule(roles=_r("ach-admin")),
    "/ach.directory.v1.DirectoryService/ReviewNeedDomains": Rule(roles=_r("ach-admin")),
    "/ach.directory.v1.DirectoryService/GetService": Rule(roles=_r(ANY)),
    "/ach.directory.v1.DirectoryService/SearchServices": Rule(roles=_r(ANY)),
    # The directory is public information (a 2-1-1 publishes it): any authenticated partner reads it.
    "/ach.directory.v1.DirectoryService/GetOrganization": Rule(roles=_r(ANY)),
    "/ach.directory.v1.DirectoryService/GetLocation": Rule(roles=_r(ANY)),
    # Measurement. The funnel's exact counts (small ones too) are the backbone's operating view;
    # viewers have the closed-loop funnel measure, small cells suppressed.
    "/ach.measurement.v1.MeasurementService/GetReferralFunnel": Rule(roles=_r("ach-admin")),
    # What each measure is and how it is counted is public information.
    "/ach.measurement.v1.MeasurementService/ListMeasures": Rule(roles=_r(ANY)),
    # Viewers see the network's figures (suppressed); a partner sees its own, suppressed as well.
    "/ach.measurement.v1.MeasurementService/GetScorecard": Rule(
        roles=_r("measurement-viewer", "ach-admin"),
        owner_roles=_r(ANY),
        owner=RequestNamesCaller("partner_id"),
    ),
    "/ach.measurement.v1.MeasurementService/GetMeasureFigures": Rule(
        roles=_r("measurement-viewer", "ach-admin"),
        owner_roles=_r(ANY),
        owner=RequestNamesCaller("partner_id"),
    ),
    "/ach.measurement.v1.MeasurementService/ExportMeasure": Rule(
        roles=_r("measurement-viewer", "ach-admin"),
        owner_roles=_r(ANY),
        owner=RequestNamesCaller("partner_id"),
    ),
    # Funding: fund managers see the ledger; a CBO sees its own payable account.
    "/ach.funding.v1.FundingService/GetAccountBalance": Rule(
        roles=_r("fund-manager"),
        owner_roles=_r("referral-target"),
        owner=RequestNamesCaller("account_id", "partner:{caller}:payable"),
    ),
    "/ach.funding.v1.FundingService/ListTransactions": Rule(
        roles=_r("fund-manager"),
        owner_roles=_r("referral-target"),
        owner=RequestNamesCaller("account_id", "partner:{caller}:payable"),
    ),
    # Only fund managers write to the ledger; what a write may do is the ledger's rules.
    "/ach.funding.v1.FundingService/PostTransaction": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/ResolvePending": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/RecordContribution": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/ListFundStreams": Rule(roles=_r("fund-manager", "ach-admin")),
    "/ach.funding.v1.FundingService/VerifyJournal": Rule(roles=_r("fund-manager", "ach-admin")),
    # A CBO sees its own outcome payments; a funder traces the stream it funds.
    "/ach.funding.v1.FundingService/ListOutcomePayments": Rule(
        roles=_r("fund-manager"),
        owner_roles=_r("referral-target"),
        owner=RequestNamesCaller("partner_id"),
    ),
    "/ach.funding.v1.FundingService/RequestDisbursement": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/DecideDisbursement": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/ListDisbursements": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/InvoicePartner": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/RecordPartnerPayment": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/PayPartner": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/RecordSharedCost": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/InvoiceSharedCosts": Rule(roles=_r("fund-manager")),
    "/ach.funding.v1.FundingService/GetFundReport": Rule(roles=_r("fund-manager", "ach-admin")),
    # A partner reads its own statement (what it was invoiced and paid, earned and was paid).
    "/ach.funding.v1.FundingService/GetPartnerStatement": Rule(
        roles=_r("fund-manager"), owner_roles=_r(ANY), owner=RequestNamesCaller("partner_id")
    ),
    "/ach.funding.v1.FundingService/TraceStream": Rule(
        roles=_r("fund-manager"),
        owner_roles=_r(ANY),
        owner=PartyTo("fund-stream", "stream_id"),
    ),
    # Notifications: ops (the backbone) read every delivery log; a partner reads its own.
    "/ach.notifications.v1.NotificationService/ListDeliveries": Rule(
        roles=_r("ach-admin"), owner_roles=_r(ANY), owner=RequestNamesCaller("partner_id")
    ),
    # A partner registers and removes its own channels; ops may for any partner.
    "/ach.notifications.v1.NotificationService/RegisterChannel": Rule(
        roles=_r("ach-admin"), owner_roles=_r(ANY), owner=RequestNamesCaller("partner_id")
    ),
    "/ach.notifications.v1.NotificationService/ListChannels": Rule(
        roles=_r("ach-admin"), owner_roles=_r(ANY), owner=RequestNamesCaller("partner_id")
    ),
    "/ach.notifications.v1.NotificationService/RemoveChannel": Rule(
        roles=_r("ach-admin"), owner_roles=_r(ANY), owner=PartyTo("channel", "channel_id")
    ),
    "/ach.notifications.v1.NotificationService/RetryDelivery": Rule(
        roles=_r("ach-admin"), owner_roles=_r(ANY), owner=PartyTo("delivery", "delivery_id")
    ),
    # Partner registry: the backbone administers; a partner reads its own entry.
    "/ach.identity.v1.PartnerRegistry/RegisterPartner": Rule(roles=_r("ach-admin")),
    "/ach.identity.v1.PartnerRegistry/RevokeCertificate": Rule(roles=_r("ach-admin")),
    "/ach.identity.v1.PartnerRegistry/UpdatePartner": Rule(roles=_r("ach-admin")),
    "/ach.identity.v1.PartnerRegistry/ListPartners": Rule(roles=_r("ach-admin")),
    "/ach.identity.v1.PartnerRegistry/GetPartner": Rule(
        roles=_r("ach-admin"), owner_roles=_r(ANY), owner=RequestNamesCaller("partner_id")
    ),
    # Resident index: screeners and referral sources register residents in their own name (the
    # link is to the caller's own id) and read those on their own books; a referral's target sees
    # what the resident consented to share, for that referral only; only the backbone merges.
    "/ach.residents.v1.ResidentIndex/RegisterResident": Rule(
        roles=_r("screener", "referral-source"), audit_ids=("partner_resident_id",), purpose="TREAT"
    ),
    "/ach.residents.v1.ResidentIndex/GetResident": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("screener", "referral-source"),
        owner=PartyTo("resident", "resident_id"),
        audit_ids=("resident_id",),
        purpose="TREAT",
    ),
    "/ach.residents.v1.ResidentIndex/GetResidentForReferral": Rule(
        owner_roles=_r("referral-target"),
        owner=PartyTo("referral-target", "referral_id"),
        audit_ids=("referral_id",),
    ),
    # The network's own messages to a resident about a referral (the notifications service acts as
    # the ACH): the chosen channel's address, just before sending.
    "/ach.residents.v1.ResidentIndex/GetResidentContact": Rule(
        roles=_r("ach-admin"), audit_ids=("resident_id", "referral_id"), purpose="TREAT"
    ),
    "/ach.residents.v1.ResidentIndex/MergeResidents": Rule(
        roles=_r("ach-admin"), audit_ids=("survivor_id", "merged_id"), purpose="HOPERAT"
    ),
    # Consent: recorded and read by the partners that have the resident on their books; the
    # backbone may also revoke (a resident can call the ACH) and read.
    "/ach.residents.v1.ConsentRegistry/RecordConsent": Rule(
        owner_roles=_r("screener", "referral-source"),
        owner=PartyTo("resident", "resident_id"),
        audit_ids=("resident_id",),
    ),
    "/ach.residents.v1.ConsentRegistry/RevokeConsent": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("screener", "referral-source"),
        owner=PartyTo("consent", "consent_id"),
        audit_ids=("consent_id",),
    ),
    "/ach.residents.v1.ConsentRegistry/ListConsents": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("screener", "referral-source"),
        owner=PartyTo("resident", "resident_id"),
        audit_ids=("resident_id",),
    ),
    "/ach.residents.v1.ConsentRegistry/SetContactPreference": Rule(
        roles=_r("ach-admin"),
        owner_roles=_r("screener", "referral-source"),
        owner=PartyTo("resident", "resident_id"),
        audit_ids=("resident_id",),
    ),
    # The audit trail names residents: only the backbone reads it, and reading it is audited too.
    "/ach.audit.v1.AuditLog/QueryAccess": Rule(
        roles=_r("ach-admin"), audit_ids=("resident_id", "partner_id"), purpose="HOPERAT"
    ),
}


async def decide(
    method: str,
    partner: PartnerView | None,
    request: Message,
    resolvers: Mapping[str, OwnerResolver],
    policy: Mapping[str, Rule] = POLICY,
    certificate_serial: str = "",
) -> None:
    """Raises Unauthenticated or PermissionDenied unless the call is allowed."""
    rule = policy.get(method)
    if rule is None:
        raise PermissionDenied(f"no access rule for {method}")
    if partner is None:
        raise PermissionDenied("the caller is not a registered partner")
    if not partner.active:
        raise Unauthenticated("the caller's credentials are revoked (partner suspended)")
    if certificate_serial and certificate_serial in partner.revoked_certificates:
        raise Unauthenticated("this client certificate is revoked")
    if rule.has_role(partner, rule.roles):
        return
    if rule.owner is not None and rule.has_role(partner, rule.owner_roles):
        if await rule.owner.holds(partner.partner_id, request, resolvers):
            return
        raise PermissionDenied(
            f"{partner.partner_id} may not {method.rsplit('/', 1)[-1]} for another partner"
        )
    raise PermissionDenied(f"{partner.partner_id} has no role that allows {method.rsplit('/', 1)[-1]}")


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Runs after authentication: applies POLICY to every call before its handler runs."""

    def __init__(
        self,
        partners: PartnerLookup,
        resolvers: Mapping[str, OwnerResolver],
        policy: Mapping[str, Rule] = POLICY,
    ) -> None:
        self._partners = partners
        self._resolvers = resolvers
        self._policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in OPEN_METHODS:
            return handler
        if handler.unary_unary is None:
            return None  # fail closed: a streaming API would need its own enforcement (UNIMPLEMENTED)
        inner = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = principal()
            await decide(
                method,
                self._partners.get(caller.partner_id),
                request,
                self._resolvers,
                self._policy,
                caller.certificate_serial,
            )
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
