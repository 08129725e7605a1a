"""Wiring of the identity service, and its command line:

    ach-identity migrate | serve
    ach-identity bootstrap --admin ach-backbone --name "Reinvent South Stockton Coalition"
    ach-identity partners list
    ach-identity partners add ID --name NAME --type cbo --role referral-target [--role ...]
    ach-identity partners update ID [--role ...] [--suspend | --reactivate] [--name NAME]
    ach-identity audit export [--partner ID] [--resident ID]
    ach-identity kafka provision ID [--password-file FILE]

`bootstrap` writes the first ACH admin straight into the registry's database (only while there is
none); every other change goes through the gRPC API as a partner (--as, default ach-backbone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import grpc
from ach.audit.v1 import audit_pb2, audit_pb2_grpc
from ach.identity.v1 import identity_pb2, identity_pb2_grpc
from ach.referrals.v1 import referrals_pb2
from ach.residents.v1 import residents_pb2, residents_pb2_grpc
from ach_events.outbox import Outbox
from ach_events.partner_topics import grant_services, inbound_pattern, inbound_topic, provision_partner
from ach_events.runtime import Command, Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli
from ach_events.topics import AUDIT_EVENTS, REFERRAL_EVENTS, RESIDENT_EVENTS
from ach_platform.clock import to_timestamp, utc_now
from ach_platform.codes import code_of, value_of
from ach_platform.database import create_engine, session_factory
from ach_platform.dev_pki import DevPki
from ach_platform.grpc_client import partner_channel
from ach_platform.settings import ConfigError, ServiceSettings, pki_dir
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlmodel import select

from ach_identity import domain, gateway
from ach_identity.api import PartnerRegistryApi
from ach_identity.audit import AuditLogApi, on_access_recorded
from ach_identity.consent_api import ConsentRegistryApi
from ach_identity.owners import owner_resolvers
from ach_identity.publishers import publish_partner_changed
from ach_identity.resident_index_api import ResidentIndexApi
from ach_identity.store import PartnerRecord, ReferralReplica, ResidentLink
from ach_identity.subscribers import on_referral_created, on_referral_status_changed


def wire(runtime: Runtime) -> None:
    api = PartnerRegistryApi(runtime.sessions, runtime.outbox)
    runtime.serve(api, identity_pb2_grpc.add_PartnerRegistryServicer_to_server)
    audit_api = AuditLogApi(runtime.sessions)
    runtime.serve(audit_api, audit_pb2_grpc.add_AuditLogServicer_to_server)
    index_api = ResidentIndexApi(runtime.sessions, runtime.outbox)
    runtime.serve(index_api, residents_pb2_grpc.add_ResidentIndexServicer_to_server)
    consent_api = ConsentRegistryApi(runtime.sessions, runtime.outbox)
    runtime.serve(consent_api, residents_pb2_grpc.add_ConsentRegistryServicer_to_server)
    for resource, resolver in owner_resolvers(runtime.sessions).items():
        runtime.resolve_owners(resource, resolver)
    runtime.owned_by("referral-target", ReferralReplica, lambda referral: {referral.target_partner_id})
    partner_gateway = gateway.PartnerGateway(runtime.outbox)
    runtime.consume_pattern(
        inbound_pattern(),
        inbound_topic("any-partner"),
        gateway.GROUP,
        dict.fromkeys(gateway.ACCEPTED_TYPES, partner_gateway.on_partner_event),
        gateway.admit,
    )
    runtime.consume(
        [AUDIT_EVENTS, REFERRAL_EVENTS],
        {
            audit_pb2.AccessRecorded: on_access_recorded,
            referrals_pb2.ReferralCreated: on_referral_created,
            referrals_pb2.ReferralStatusChanged: on_referral_status_changed,
        },
    )


async def bootstrap(admin: str, name: str) -> str:
    settings = ServiceSettings.from_env("identity")
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            for existing in (await session.exec(select(PartnerRecord))).all():
                if "ach-admin" in existing.roles and existing.status == "active":
                    return f"the registry already has an ACH admin ({existing.id}); nothing done"
            problems = domain.validate(domain.PartnerDraft(admin, name, "backbone", ("ach-admin",)))
            if problems:
                raise ConfigError("; ".join(f"{p.field}: {p.description}" for p in problems))
            now = utc_now()
            record = PartnerRecord(
                id=admin,
                name=name,
                type="backbone",
                roles=sorted(domain.ROLES),
                status="active",
                version=1,
                created_at=now,
                updated_at=now,
            )
            session.add(record)
            publish_partner_changed(session, Outbox("/ach/identity"), record)
        return f"registered {admin} as the ACH backbone with every role"
    finally:
        await engine.dispose()


async def relink() -> str:
    """Publish every partner link again (ResidentLinked): services that keep who has which resident
    on their books, added after those links were made, learn them. Consumers keep each link once."""
    settings = ServiceSettings.from_env("identity")
    engine = create_engine(settings.database_url)
    outbox = Outbox("/ach/identity")
    try:
        async with session_factory(engine)() as session, session.begin():
            links = (await session.exec(select(ResidentLink))).all()
            for link in links:
                event = residents_pb2.ResidentLinked(
                    resident_id=link.resident_id,
                    partner_id=link.partner_id,
                    linked_at=to_timestamp(link.created_at),
                )
                outbox.add(session, RESIDENT_EVENTS, event, key=link.resident_id, subject=link.resident_id)
        return f"published {len(links)} resident links again"
    finally:
        await engine.dispose()


def _registry(as_partner: str) -> identity_pb2_grpc.PartnerRegistryStub:
    pki = DevPki(pki_dir())
    address = ServiceSettings.from_env("identity").peers["identity"]
    if not pki.client_cert(as_partner).is_file():
        raise ConfigError(f"no client certificate for {as_partner} in {pki.directory}")
    channel = partner_channel(
        address, pki.ca_cert, cert=pki.client_cert(as_partner), key=pki.client_key(as_partner)
    )
    return identity_pb2_grpc.PartnerRegistryStub(channel)


def _show(p: identity_pb2.Partner) -> str:
    roles = ",".join(code_of(identity_pb2.PartnerRole, r) for r in p.roles)
    return (
        f"{p.partner_id:<28} {code_of(identity_pb2.PartnerType, p.type):<9} "
        f"{code_of(identity_pb2.PartnerStatus, p.status):<10} {roles}  ({p.name})"
    )


def partners_command(args: argparse.Namespace) -> int:
    registry = _registry(args.as_partner)
    try:
        if args.action == "list":
            for partner in registry.ListPartners(identity_pb2.ListPartnersRequest(), timeout=10).partners:
                print(_show(partner))
            return 0
        roles = [value_of(identity_pb2.PartnerRole, r) for r in args.role or []]
        if args.action == "add":
            result = registry.RegisterPartner(
                identity_pb2.RegisterPartnerRequest(
                    partner_id=args.partner_id,
                    name=args.name or "",
                    roles=roles,
                    type=value_of(identity_pb2.PartnerType, args.type or ""),
                ),
                timeout=10,
            )
        else:
            status = "suspended" if args.suspend else "active" if args.reactivate else ""
            current = registry.GetPartner(
                identity_pb2.GetPartnerRequest(partner_id=args.partner_id), timeout=10
            )
            result = registry.UpdatePartner(
                identity_pb2.UpdatePartnerRequest(
                    partner_id=args.partner_id,
                    name=args.name or "",
                    roles=roles if args.role is not None else list(current.roles),  # type: ignore[arg-type]
                    status=value_of(identity_pb2.PartnerStatus, status),
                ),
                timeout=10,
            )
        print(_show(result))
        return 0
    except ValueError as exc:  # an unknown role or type name given on the command line
        print(f"ach-identity: error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"ach-identity: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        status_details = rpc_status.from_call(exc)  # type: ignore[arg-type]
        for detail in status_details.details if status_details else []:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                for v in bad.field_violations:
                    print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 2


def audit_export(args: argparse.Namespace) -> int:
    """Every matching record as one JSON object a line, oldest first, page by page."""
    from google.protobuf.json_format import MessageToDict

    pki = DevPki(pki_dir())
    address = ServiceSettings.from_env("identity").peers["identity"]
    channel = partner_channel(
        address, pki.ca_cert, cert=pki.client_cert(args.as_partner), key=pki.client_key(args.as_partner)
    )
    log = audit_pb2_grpc.AuditLogStub(channel)
    request = audit_pb2.QueryAccessRequest(
        partner_id=args.partner or "", resident_id=args.resident or "", page_size=1000
    )
    metadata = (("x-ach-purpose-of-use", "HOPERAT"),)
    count = 0
    try:
        while True:
            page = log.QueryAccess(request, timeout=30, metadata=metadata)
            for record in page.records:
                print(json.dumps(MessageToDict(record), separators=(",", ":")))
                count += 1
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    except grpc.RpcError as exc:
        print(f"ach-identity: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 2
    print(f"ach-identity: exported {count} audit records", file=sys.stderr)
    return 0


def kafka_provision(args: argparse.Namespace) -> int:
    """A partner's inbound/outbound topics, SCRAM credential and ACLs, as the admin principal the
    KAFKA_* settings name; or (grant-services) the platform services' own ACLs."""
    if args.action == "grant-services":
        from ach_platform.settings import DEFAULT_PORTS, kafka_bootstrap_servers

        try:
            made = grant_services(kafka_bootstrap_servers(), sorted(DEFAULT_PORTS))
        except RuntimeError as exc:
            print(f"ach-identity: error: {exc}", file=sys.stderr)
            return 2
        print(f"ach-identity: {made} ACLs for the services (literal topic names only)", file=sys.stderr)
        return 0
    if not args.partner_id:
        raise ConfigError("kafka provision needs a partner id")
    password = None
    if args.password_file:
        try:
            password = Path(args.password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--password-file {args.password_file}: {exc.strerror}") from None
        if len(password) < 16:
            raise ConfigError(f"--password-file {args.password_file}: use at least 16 characters")
    from ach_platform.settings import kafka_bootstrap_servers

    try:
        done = provision_partner(kafka_bootstrap_servers(), args.partner_id, password)
    except (ValueError, RuntimeError) as exc:
        print(f"ach-identity: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"ach-identity: {done.partner_id}: topics {', '.join(done.topics)}; {done.acls} ACLs"
        + ("; SCRAM-SHA-512 credential set" if done.credential else ""),
        file=sys.stderr,
    )
    return 0


def bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin", required=True)
    parser.add_argument("--name", required=True)


def partners_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "add", "update"])
    parser.add_argument("partner_id", nargs="?")
    parser.add_argument("--name")
    parser.add_argument("--type", choices=sorted(domain.TYPES))
    parser.add_argument("--role", action="append", choices=sorted(domain.ROLES))
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--suspend", action="store_true")
    state.add_argument("--reactivate", action="store_true")
    parser.add_argument(
        "--as", dest="as_partner", default="ach-backbone", help="the partner making the change"
    )


def audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["export"])
    parser.add_argument("--partner", help="only this partner's accesses")
    parser.add_argument("--resident", help="only accesses to this (pseudonymous) resident")
    parser.add_argument("--as", dest="as_partner", default="ach-backbone")


def kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["provision", "grant-services"])
    parser.add_argument("partner_id", nargs="?")
    parser.add_argument("--password-file", help="the partner's SCRAM password (set or replaced)")


def partners_or_usage(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.partner_id:
        raise ConfigError("partners add/update need a partner id")
    return partners_command(args)


def said(message: str) -> int:
    print(f"ach-identity: {message}", file=sys.stderr)
    return 0


def no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


DEFINITION = ServiceDefinition(
    "identity",
    Path(__file__).parent / "migrations",
    wire,
    commands=(
        Command(
            "bootstrap",
            "register the first ACH admin (only while there is none)",
            bootstrap_arguments,
            lambda args: said(asyncio.run(bootstrap(args.admin, args.name))),
        ),
        Command(
            "partners",
            "list, add or update partners through the gRPC API",
            partners_arguments,
            partners_or_usage,
        ),
        Command(
            "audit",
            "export the audit log of access to resident-level data (JSON lines)",
            audit_arguments,
            audit_export,
        ),
        Command(
            "relink",
            "publish every partner link to a resident again (after an upgrade)",
            no_arguments,
            lambda args: said(asyncio.run(relink())),
        ),
        Command(
            "kafka",
            "provision a partner's Kafka topics, credential and ACLs",
            kafka_arguments,
            kafka_provision,
        ),
    ),
)


def cli(argv: list[str] | None = None) -> None:
    run_cli(DEFINITION, argv)


if __name__ == "__main__":
    cli()
