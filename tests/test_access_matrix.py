"""Every role against every API method, over real mutual TLS against the running services: the
access policy as a table, written out here independently of ach_platform.access.

Each call is made "for oneself" (the request names the caller wherever a rule asks for that, and
addresses stored things that do not exist), so an allowed call ends in INVALID_ARGUMENT, NOT_FOUND
or OK and a refused one in PERMISSION_DENIED. Then the same for someone else's things, for a
suspended partner (credentials revoked) and for a stranger with a valid certificate.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from ach.audit.v1 import audit_pb2, audit_pb2_grpc
from ach.common.v1 import common_pb2
from ach.directory.v1 import directory_pb2, directory_pb2_grpc
from ach.funding.v1 import funding_pb2, funding_pb2_grpc
from ach.identity.v1 import identity_pb2, identity_pb2_grpc
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from ach.referrals.v1 import referrals_pb2, referrals_pb2_grpc
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_platform.access import POLICY
from ach_platform.codes import value_of
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tests.conftest import ALL_SERVICES
from tests.harness import Stack, eventually

pytestmark = pytest.mark.slow

ROLE_PARTNERS = {  # one partner per role, of a type that may hold it
    "screener": "clinic",
    "referral-source": "clinic",
    "referral-target": "cbo",
    "directory-editor": "backbone",
    "fund-manager": "funder",
    "measurement-viewer": "county",
    "ach-admin": "backbone",
}
EVERYONE = frozenset(ROLE_PARTNERS)
LATE = Timestamp(seconds=4_000_000_000)  # a statement from 2096: ends before it starts
ADMIN_OR_OWNERS = frozenset({"ach-admin", "screener", "referral-source"})
# A resident on another partner's books (clinic-1's), registered by the test before the matrix runs.
OTHERS: dict[str, str] = {}

# method -> (service, stub class, method name, request for `me`, roles that may call it for themselves)
Request = Callable[[str], Message]
CASES: dict[str, tuple[str, type, str, Request, frozenset[str]]] = {
    "/ach.screening.v1.ScreeningService/SubmitScreening": (
        "screening",
        screening_pb2_grpc.ScreeningServiceStub,
        "SubmitScreening",
        lambda me: screening_pb2.SubmitScreeningRequest(screened_by=common_pb2.Actor(partner_id=me)),
        frozenset({"screener"}),
    ),
    "/ach.screening.v1.ScreeningService/ImportQuestionnaireResponse": (
        "screening",
        screening_pb2_grpc.ScreeningServiceStub,
        "ImportQuestionnaireResponse",
        lambda me: screening_pb2.ImportQuestionnaireResponseRequest(
            screened_by=common_pb2.Actor(partner_id=me)
        ),
        frozenset({"screener"}),
    ),
    "/ach.screening.v1.ScreeningService/GetScreening": (
        "screening",
        screening_pb2_grpc.ScreeningServiceStub,
        "GetScreening",
        lambda me: screening_pb2.GetScreeningRequest(screening_id="no-such-screening"),
        frozenset({"screener", "referral-source"}),
    ),
    "/ach.screening.v1.ScreeningService/ListResidentScreenings": (
        "screening",
        screening_pb2_grpc.ScreeningServiceStub,
        "ListResidentScreenings",
        lambda me: screening_pb2.ListResidentScreeningsRequest(resident_id="no-such-resident"),
        ADMIN_OR_OWNERS,
    ),
    "/ach.screening.v1.ScreeningService/ListInstruments": (
        "screening",
        screening_pb2_grpc.ScreeningServiceStub,
        "ListInstruments",
        lambda me: screening_pb2.ListInstrumentsRequest(),
        EVERYONE,
    ),
    "/ach.referrals.v1.ReferralService/GetReferral": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "GetReferral",
        lambda me: referrals_pb2.GetReferralRequest(referral_id="no-such-referral"),
        frozenset({"referral-source", "referral-target"}),
    ),
    "/ach.referrals.v1.ReferralService/ListReferrals": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "ListReferrals",
        lambda me: referrals_pb2.ListReferralsRequest(partner_id=me, page_size=-1),
        frozenset({"referral-source", "referral-target", "ach-admin"}),
    ),
    "/ach.residents.v1.ResidentIndex/RegisterResident": (
        "identity",
        residents_pb2_grpc.ResidentIndexStub,
        "RegisterResident",
        lambda me: residents_pb2.RegisterResidentRequest(),
        frozenset({"screener", "referral-source"}),
    ),
    "/ach.residents.v1.ResidentIndex/GetResident": (
        "identity",
        residents_pb2_grpc.ResidentIndexStub,
        "GetResident",
        lambda me: residents_pb2.GetResidentRequest(resident_id="no-such-resident"),
        ADMIN_OR_OWNERS,
    ),
    "/ach.residents.v1.ResidentIndex/GetResidentForReferral": (
        "identity",
        residents_pb2_grpc.ResidentIndexStub,
        "GetResidentForReferral",
        lambda me: residents_pb2.GetResidentForReferralRequest(referral_id="no-such-referral"),
        frozenset({"referral-target"}),
    ),
    "/ach.residents.v1.ResidentIndex/GetResidentContact": (
        "identity",
        residents_pb2_grpc.ResidentIndexStub,
        "GetResidentContact",
        lambda me: residents_pb2.GetResidentContactRequest(resident_id="no-such-resident", referral_id="r"),
        frozenset({"ach-admin"}),
    ),
    "/ach.residents.v1.ResidentIndex/MergeResidents": (
        "identity",
        residents_pb2_grpc.ResidentIndexStub,
        "MergeResidents",
        lambda me: residents_pb2.MergeResidentsRequest(survivor_id="no-such-resident"),
        frozenset({"ach-admin"}),
    ),
    "/ach.residents.v1.ConsentRegistry/RecordConsent": (
        "identity",
        residents_pb2_grpc.ConsentRegistryStub,
        "RecordConsent",
        lambda me: residents_pb2.RecordConsentRequest(resident_id="no-such-resident"),
        frozenset({"screener", "referral-source"}),
    ),
    "/ach.residents.v1.ConsentRegistry/RevokeConsent": (
        "identity",
        residents_pb2_grpc.ConsentRegistryStub,
        "RevokeConsent",
        lambda me: residents_pb2.RevokeConsentRequest(consent_id="no-such-consent"),
        ADMIN_OR_OWNERS,
    ),
    "/ach.residents.v1.ConsentRegistry/ListConsents": (
        "identity",
        residents_pb2_grpc.ConsentRegistryStub,
        "ListConsents",
        lambda me: residents_pb2.ListConsentsRequest(resident_id="no-such-resident"),
        ADMIN_OR_OWNERS,
    ),
    "/ach.residents.v1.ConsentRegistry/SetContactPreference": (
        "identity",
        residents_pb2_grpc.ConsentRegistryStub,
        "SetContactPreference",
        lambda me: residents_pb2.SetContactPreferenceRequest(resident_id="no-such-resident"),
        ADMIN_OR_OWNERS,
    ),
    "/ach.referrals.v1.ReferralService/UpdateReferralStatus": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "UpdateReferralStatus",
        lambda me: referrals_pb2.UpdateReferralStatusRequest(referral_id="no-such-referral"),
        frozenset({"referral-source", "referral-target"}),
    ),
    "/ach.referrals.v1.ReferralService/CreateReferral": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "CreateReferral",
        lambda me: referrals_pb2.CreateReferralRequest(),  # nothing given: INVALID_ARGUMENT
        frozenset({"referral-source"}),
    ),
    "/ach.referrals.v1.ReferralService/GetReferralHistory": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "GetReferralHistory",
        lambda me: referrals_pb2.GetReferralHistoryRequest(referral_id="no-such-referral"),
        frozenset({"referral-source", "referral-target", "ach-admin"}),
    ),
    "/ach.referrals.v1.ReferralService/ProposeTargets": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "ProposeTargets",
        lambda me: referrals_pb2.ProposeTargetsRequest(referral_id="no-such-referral"),
        frozenset({"referral-source"}),
    ),
    "/ach.referrals.v1.ReferralService/RerouteReferral": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "RerouteReferral",
        lambda me: referrals_pb2.RerouteReferralRequest(referral_id="no-such-referral"),
        frozenset({"referral-source"}),
    ),
    "/ach.referrals.v1.ReferralService/ExportReferralFhir": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "ExportReferralFhir",
        lambda me: referrals_pb2.ExportReferralFhirRequest(referral_id="no-such-referral"),
        frozenset({"referral-source", "referral-target", "ach-admin"}),
    ),
    "/ach.referrals.v1.ReferralService/UpdateReferralFromFhirTask": (
        "referrals",
        referrals_pb2_grpc.ReferralServiceStub,
        "UpdateReferralFromFhirTask",
        lambda me: referrals_pb2.UpdateReferralFromFhirTaskRequest(task_json="{}"),
        frozenset({"referral-source", "referral-target"}),
    ),
    "/ach.directory.v1.DirectoryService/UpsertService": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "UpsertService",
        lambda me: directory_pb2.UpsertServiceRequest(
            service=directory_pb2.Service(service_id=f"svc-of-{me}", organization_id=me)
        ),
        frozenset({"directory-editor", "referral-target"}),
    ),
    "/ach.directory.v1.DirectoryService/LinkOrganization": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "LinkOrganization",
        lambda me: directory_pb2.LinkOrganizationRequest(organization_id="no-such-organization"),
        frozenset({"ach-admin"}),
    ),
    "/ach.identity.v1.PartnerRegistry/RevokeCertificate": (
        "identity",
        identity_pb2_grpc.PartnerRegistryStub,
        "RevokeCertificate",
        lambda me: identity_pb2.RevokeCertificateRequest(partner_id="no-such-partner", serial_number="ab"),
        frozenset({"ach-admin"}),
    ),
    "/ach.directory.v1.DirectoryService/ListNeedDomainClaims": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "ListNeedDomainClaims",
        lambda me: directory_pb2.ListNeedDomainClaimsRequest(),
        frozenset({"ach-admin"}),
    ),
    "/ach.directory.v1.DirectoryService/ReviewNeedDomains": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "ReviewNeedDomains",
        lambda me: directory_pb2.ReviewNeedDomainsRequest(service_id="no-such-service"),
        frozenset({"ach-admin"}),
    ),
    "/ach.directory.v1.DirectoryService/GetService": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "GetService",
        lambda me: directory_pb2.GetServiceRequest(service_id="no-such-service"),
        EVERYONE,
    ),
    "/ach.directory.v1.DirectoryService/SearchServices": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "SearchServices",
        lambda me: directory_pb2.SearchServicesRequest(page_size=-1),
        EVERYONE,
    ),
    "/ach.directory.v1.DirectoryService/GetOrganization": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "GetOrganization",
        lambda me: directory_pb2.GetRecordRequest(id="no-such-organization"),
        EVERYONE,
    ),
    "/ach.directory.v1.DirectoryService/GetLocation": (
        "directory",
        directory_pb2_grpc.DirectoryServiceStub,
        "GetLocation",
        lambda me: directory_pb2.GetRecordRequest(id="no-such-location"),
        EVERYONE,
    ),
    "/ach.measurement.v1.MeasurementService/GetReferralFunnel": (
        "measurement",
        measurement_pb2_grpc.MeasurementServiceStub,
        "GetReferralFunnel",
        lambda me: measurement_pb2.GetReferralFunnelRequest(),
        frozenset({"ach-admin"}),
    ),
    "/ach.measurement.v1.MeasurementService/ListMeasures": (
        "measurement",
        measurement_pb2_grpc.MeasurementServiceStub,
        "ListMeasures",
        lambda me: measurement_pb2.ListMeasuresRequest(),
        EVERYONE,
    ),
    "/ach.measurement.v1.MeasurementService/GetScorecard": (
        "measurement",
        measurement_pb2_grpc.MeasurementServiceStub,
        "GetScorecard",
        lambda me: measurement_pb2.GetScorecardRequest(partner_id=me, measure_ids=["screenings"]),
        EVERYONE,
    ),
    "/ach.measurement.v1.MeasurementService/GetMeasureFigures": (
        "measurement",
        measurement_pb2_grpc.MeasurementServiceStub,
        "GetMeasureFigures",
        lambda me: measurement_pb2.GetMeasureFiguresRequest(partner_id=me, measure_id="no-such-measure"),
        EVERYONE,
    ),
    "/ach.measurement.v1.MeasurementService/ExportMeasure": (
        "measurement",
        measurement_pb2_grpc.MeasurementServiceStub,
        "ExportMeasure",
        lambda me: measurement_pb2.ExportMeasureRequest(partner_id=me, measure_id="no-such-measure"),
        EVERYONE,
    ),
    "/ach.funding.v1.FundingService/GetAccountBalance": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "GetAccountBalance",
        lambda me: funding_pb2.GetAccountBalanceRequest(account_id=f"partner:{me}:payable"),
        frozenset({"fund-manager", "referral-target"}),
    ),
    "/ach.funding.v1.FundingService/ListTransactions": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "ListTransactions",
        lambda me: funding_pb2.ListTransactionsRequest(account_id=f"partner:{me}:payable", page_size=-1),
        frozenset({"fund-manager", "referral-target"}),
    ),
    # Writes without a key: INVALID_ARGUMENT once past the policy, nothing written.
    "/ach.funding.v1.FundingService/PostTransaction": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "PostTransaction",
        lambda me: funding_pb2.PostTransactionRequest(kind="grant"),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/ResolvePending": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "ResolvePending",
        lambda me: funding_pb2.ResolvePendingRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/RecordContribution": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "RecordContribution",
        lambda me: funding_pb2.RecordContributionRequest(stream_id="x" * 101),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/ListFundStreams": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "ListFundStreams",
        lambda me: funding_pb2.ListFundStreamsRequest(),
        frozenset({"fund-manager", "ach-admin"}),
    ),
    "/ach.funding.v1.FundingService/VerifyJournal": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "VerifyJournal",
        lambda me: funding_pb2.VerifyJournalRequest(),
        frozenset({"fund-manager", "ach-admin"}),
    ),
    "/ach.funding.v1.FundingService/ListOutcomePayments": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "ListOutcomePayments",
        lambda me: funding_pb2.ListOutcomePaymentsRequest(partner_id=me, page_size=-1),
        frozenset({"fund-manager", "referral-target"}),
    ),
    "/ach.funding.v1.FundingService/RequestDisbursement": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "RequestDisbursement",
        lambda me: funding_pb2.RequestDisbursementRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/DecideDisbursement": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "DecideDisbursement",
        lambda me: funding_pb2.DecideDisbursementRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/ListDisbursements": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "ListDisbursements",
        lambda me: funding_pb2.ListDisbursementsRequest(page_size=-1),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/InvoicePartner": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "InvoicePartner",
        lambda me: funding_pb2.InvoicePartnerRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/RecordPartnerPayment": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "RecordPartnerPayment",
        lambda me: funding_pb2.PartnerPaymentRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/PayPartner": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "PayPartner",
        lambda me: funding_pb2.PartnerPaymentRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/RecordSharedCost": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "RecordSharedCost",
        lambda me: funding_pb2.RecordSharedCostRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/InvoiceSharedCosts": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "InvoiceSharedCosts",
        lambda me: funding_pb2.InvoiceSharedCostsRequest(),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/GetFundReport": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "GetFundReport",
        lambda me: funding_pb2.GetFundReportRequest(year=1),
        frozenset({"fund-manager", "ach-admin"}),
    ),
    "/ach.funding.v1.FundingService/GetPartnerStatement": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "GetPartnerStatement",
        lambda me: funding_pb2.GetPartnerStatementRequest(partner_id=me, start=LATE),
        EVERYONE,
    ),
    "/ach.funding.v1.FundingService/TraceStream": (
        "funding",
        funding_pb2_grpc.FundingServiceStub,
        "TraceStream",
        lambda me: funding_pb2.TraceStreamRequest(stream_id="no-such-stream"),
        EVERYONE,
    ),
    "/ach.notifications.v1.NotificationService/ListDeliveries": (
        "notifications",
        notifications_pb2_grpc.NotificationServiceStub,
        "ListDeliveries",
        lambda me: notifications_pb2.ListDeliveriesRequest(partner_id=me, page_size=-1),
        EVERYONE,
    ),
    "/ach.notifications.v1.NotificationService/RegisterChannel": (
        "notifications",
        notifications_pb2_grpc.NotificationServiceStub,
        "RegisterChannel",
        lambda me: notifications_pb2.RegisterChannelRequest(partner_id=me),  # no kind: INVALID_ARGUMENT
        EVERYONE,
    ),
    "/ach.notifications.v1.NotificationService/ListChannels": (
        "notifications",
        notifications_pb2_grpc.NotificationServiceStub,
        "ListChannels",
        lambda me: notifications_pb2.ListChannelsRequest(partner_id=me),
        EVERYONE,
    ),
    "/ach.notifications.v1.NotificationService/RemoveChannel": (
        "notifications",
        notifications_pb2_grpc.NotificationServiceStub,
        "RemoveChannel",
        lambda me: notifications_pb2.RemoveChannelRequest(channel_id="no-such-channel"),
        EVERYONE,
    ),
    "/ach.notifications.v1.NotificationService/RetryDelivery": (
        "notifications",
        notifications_pb2_grpc.NotificationServiceStub,
        "RetryDelivery",
        lambda me: notifications_pb2.RetryDeliveryRequest(delivery_id="no-such-delivery"),
        EVERYONE,
    ),
    "/ach.identity.v1.PartnerRegistry/RegisterPartner": (
        "identity",
        identity_pb2_grpc.PartnerRegistryStub,
        "RegisterPartner",
        lambda me: identity_pb2.RegisterPartnerRequest(partner_id="Not Valid"),
        frozenset({"ach-admin"}),
    ),
    "/ach.identity.v1.PartnerRegistry/UpdatePartner": (
        "identity",
        identity_pb2_grpc.PartnerRegistryStub,
        "UpdatePartner",
        lambda me: identity_pb2.UpdatePartnerRequest(partner_id="no-such-partner"),
        frozenset({"ach-admin"}),
    ),
    "/ach.identity.v1.PartnerRegistry/ListPartners": (
        "identity",
        identity_pb2_grpc.PartnerRegistryStub,
        "ListPartners",
        lambda me: identity_pb2.ListPartnersRequest(),
        frozenset({"ach-admin"}),
    ),
    "/ach.audit.v1.AuditLog/QueryAccess": (
        "identity",
        audit_pb2_grpc.AuditLogStub,
        "QueryAccess",
        lambda me: audit_pb2.QueryAccessRequest(page_size=-1),
        frozenset({"ach-admin"}),
    ),
    "/ach.identity.v1.PartnerRegistry/GetPartner": (
        "identity",
        identity_pb2_grpc.PartnerRegistryStub,
        "GetPartner",
        lambda me: identity_pb2.GetPartnerRequest(partner_id=me),
        EVERYONE,
    ),
}

# Requests for what belongs to another partner: refused to every role but the unconditional ones.
SOMEONE_ELSES: dict[str, tuple[Request, frozenset[str]]] = {
    "/ach.screening.v1.ScreeningService/SubmitScreening": (
        lambda me: screening_pb2.SubmitScreeningRequest(
            screened_by=common_pb2.Actor(partner_id="clinic-elsewhere")
        ),
        frozenset(),
    ),
    "/ach.directory.v1.DirectoryService/UpsertService": (
        lambda me: directory_pb2.UpsertServiceRequest(
            service=directory_pb2.Service(service_id="x", organization_id="cbo-elsewhere")
        ),
        frozenset({"directory-editor"}),
    ),
    "/ach.funding.v1.FundingService/GetAccountBalance": (
        lambda me: funding_pb2.GetAccountBalanceRequest(account_id="partner:cbo-elsewhere:payable"),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/ListOutcomePayments": (
        lambda me: funding_pb2.ListOutcomePaymentsRequest(partner_id="cbo-elsewhere"),
        frozenset({"fund-manager"}),
    ),
    "/ach.funding.v1.FundingService/GetPartnerStatement": (
        lambda me: funding_pb2.GetPartnerStatementRequest(partner_id="cbo-elsewhere"),
        frozenset({"fund-manager"}),
    ),
    # The shipped example's stream, funded by the demo's wellness-fund: no test partner's.
    "/ach.funding.v1.FundingService/TraceStream": (
        lambda me: funding_pb2.TraceStreamRequest(stream_id="health-plan-reinvestment-2026"),
        frozenset({"fund-manager"}),
    ),
    "/ach.measurement.v1.MeasurementService/GetScorecard": (
        lambda me: measurement_pb2.GetScorecardRequest(partner_id="cbo-elsewhere"),
        frozenset({"measurement-viewer", "ach-admin"}),
    ),
    "/ach.measurement.v1.MeasurementService/GetMeasureFigures": (
        lambda me: measurement_pb2.GetMeasureFiguresRequest(measure_id="screenings"),
        frozenset({"measurement-viewer", "ach-admin"}),
    ),
    "/ach.measurement.v1.MeasurementService/ExportMeasure": (
        lambda me: measurement_pb2.ExportMeasureRequest(
            partner_id="clinic-elsewhere", measure_id="screenings"
        ),
        frozenset({"measurement-viewer", "ach-admin"}),
    ),
    "/ach.notifications.v1.NotificationService/ListDeliveries": (
        lambda me: notifications_pb2.ListDeliveriesRequest(partner_id="cbo-elsewhere"),
        frozenset({"ach-admin"}),
    ),
    "/ach.notifications.v1.NotificationService/RegisterChannel": (
        lambda me: notifications_pb2.RegisterChannelRequest(partner_id="cbo-elsewhere"),
        frozenset({"ach-admin"}),
    ),
    "/ach.notifications.v1.NotificationService/ListChannels": (
        lambda me: notifications_pb2.ListChannelsRequest(partner_id="cbo-elsewhere"),
        frozenset({"ach-admin"}),
    ),
    "/ach.identity.v1.PartnerRegistry/GetPartner": (
        lambda me: identity_pb2.GetPartnerRequest(partner_id="cbo-elsewhere"),
        frozenset({"ach-admin"}),
    ),
    "/ach.referrals.v1.ReferralService/ListReferrals": (
        lambda me: referrals_pb2.ListReferralsRequest(partner_id="cbo-elsewhere"),
        frozenset({"ach-admin"}),
    ),
    "/ach.residents.v1.ResidentIndex/GetResident": (
        lambda me: residents_pb2.GetResidentRequest(resident_id=OTHERS["resident"]),
        frozenset({"ach-admin"}),
    ),
    "/ach.screening.v1.ScreeningService/ListResidentScreenings": (
        lambda me: screening_pb2.ListResidentScreeningsRequest(resident_id=OTHERS["resident"]),
        frozenset({"ach-admin"}),
    ),
    "/ach.screening.v1.ScreeningService/ImportQuestionnaireResponse": (
        lambda me: screening_pb2.ImportQuestionnaireResponseRequest(
            screened_by=common_pb2.Actor(partner_id="clinic-elsewhere")
        ),
        frozenset(),
    ),
    "/ach.residents.v1.ConsentRegistry/RecordConsent": (
        lambda me: residents_pb2.RecordConsentRequest(resident_id=OTHERS["resident"]),
        frozenset(),
    ),
    "/ach.residents.v1.ConsentRegistry/ListConsents": (
        lambda me: residents_pb2.ListConsentsRequest(resident_id=OTHERS["resident"]),
        frozenset({"ach-admin"}),
    ),
    "/ach.residents.v1.ConsentRegistry/SetContactPreference": (
        lambda me: residents_pb2.SetContactPreferenceRequest(resident_id=OTHERS["resident"]),
        frozenset({"ach-admin"}),
    ),
}


def all_api_methods() -> set[str]:
    modules = (
        screening_pb2,
        referrals_pb2,
        directory_pb2,
        measurement_pb2,
        funding_pb2,
        notifications_pb2,
        identity_pb2,
        audit_pb2,
        residents_pb2,
    )
    return {
        f"/{service.full_name}/{method.name}"
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def test_every_api_method_has_a_rule_and_a_row_here() -> None:
    assert all_api_methods() == set(POLICY) == set(CASES)


def call_with_details(
    stack: Stack, partner: str, method: str, request: Message
) -> tuple[grpc.StatusCode, str]:
    service, stub_class, name, _, _ = CASES[method]
    with stack.channel(service, partner) as channel:
        try:
            getattr(stub_class(channel), name)(request, timeout=10)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""  # type: ignore[attr-defined]


def call(stack: Stack, partner: str, method: str, request: Message) -> grpc.StatusCode:
    return call_with_details(stack, partner, method, request)[0]


def test_role_by_method_matrix(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack("sqlite")
    stack.start(*ALL_SERVICES)
    with stack.channel("identity") as channel:
        registry = identity_pb2_grpc.PartnerRegistryStub(channel)
        for role, type_code in ROLE_PARTNERS.items():
            registry.RegisterPartner(
                identity_pb2.RegisterPartnerRequest(
                    partner_id=f"only-{role}",
                    name=role,
                    type=value_of(identity_pb2.PartnerType, type_code),
                    roles=[value_of(identity_pb2.PartnerRole, role)],
                ),
                timeout=10,
            )
        registry.RegisterPartner(
            identity_pb2.RegisterPartnerRequest(
                partner_id="suspended-cbo",
                name="s",
                type=identity_pb2.PARTNER_TYPE_CBO,
                roles=[identity_pb2.PARTNER_ROLE_REFERRAL_TARGET],
            ),
            timeout=10,
        )
        registry.UpdatePartner(
            identity_pb2.UpdatePartnerRequest(
                partner_id="suspended-cbo",
                roles=[identity_pb2.PARTNER_ROLE_REFERRAL_TARGET],
                status=identity_pb2.PARTNER_STATUS_SUSPENDED,
            ),
            timeout=10,
        )
    stack.wait_registry_published()
    OTHERS["resident"] = stack.consenting_resident("clinic-1")

    one_method_per_service = {case[0]: method for method, case in CASES.items()}
    partners = [f"only-{role}" for role in ROLE_PARTNERS] + ["suspended-cbo"]

    def settled() -> bool:  # every service's replica knows every partner, and the suspension
        for method in one_method_per_service.values():
            for partner in partners:
                code, details = call_with_details(stack, partner, method, CASES[method][3](partner))
                if details == "the caller is not a registered partner":
                    return False
                if partner == "suspended-cbo" and code != grpc.StatusCode.UNAUTHENTICATED:
                    return False
        return True

    eventually(settled, 30, "the replicas caught up")
    denied = {grpc.StatusCode.PERMISSION_DENIED}
    mismatches: list[str] = []
    for method, (_, _, _, request, allowed) in CASES.items():
        for role in ROLE_PARTNERS:
            partner = f"only-{role}"
            code = call(stack, partner, method, request(partner))
            if (code in denied) == (role in allowed) or code == grpc.StatusCode.UNAUTHENTICATED:
                mismatches.append(
                    f"{role} -> {method}: {code.name} (expected {'allowed' if role in allowed else 'denied'})"
                )
        for who, expected in (
            ("suspended-cbo", grpc.StatusCode.UNAUTHENTICATED),
            ("never-registered", grpc.StatusCode.PERMISSION_DENIED),
        ):
            code = call(stack, who, method, request(who))
            if code != expected:
                mismatches.append(f"{who} -> {method}: {code.name} (expected {expected.name})")
    for method, (request, allowed) in SOMEONE_ELSES.items():
        for role in ROLE_PARTNERS:
            partner = f"only-{role}"
            code = call(stack, partner, method, request(partner))
            if (code in denied) == (role in allowed):
                mismatches.append(f"{role} -> {method} for another partner: {code.name}")
    assert mismatches == []
    assert stack.stop_all() == dict.fromkeys(ALL_SERVICES, 0)
