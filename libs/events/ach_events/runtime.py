"""How every ACH service process runs: one asyncio loop holding the gRPC server, the FastStream
consumers, the outbox relay and the metrics endpoint, with fail-fast start-up checks and a
graceful stop on SIGTERM/SIGINT.

A service's ``main`` only says what it serves and what it consumes (``ServiceWiring``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ach_platform import migrations
from ach_platform.access import OwnerResolver
from ach_platform.auth import AuthSettings
from ach_platform.database import check_database, create_engine, session_factory
from ach_platform.grpc_server import GrpcServer, Registrar
from ach_platform.leadership import Leadership
from ach_platform.settings import ConfigError, ServiceSettings
from ach_platform.telemetry import setup_telemetry, shutdown_telemetry
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from ach_events.audit_trail import KafkaAuditSink
from ach_events.consumer import Admission, EventConsumer, EventHandler, EventKey
from ach_events.kafka_clients import idempotent_producer, start_producer
from ach_events.kafka_security import broker_security
from ach_events.outbox import Outbox
from ach_events.partners import PartnerReplica
from ach_events.pruning import Pruner
from ach_events.relay import OutboxRelay
from ach_events.settings import BackboneSettings
from ach_events.topics import ALL_TOPICS, BrokerUnavailable, Topic, ensure_topics

log = logging.getLogger(__name__)

GRACE_S = 10.0


@dataclass(frozen=True)
class PatternSubscription:
    pattern: str
    group: str
    handlers: Mapping[str, EventHandler]
    admit: Admission


@dataclass
class Runtime:
    """What a service's wiring gets to build its servicers and handlers from."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    registrars: list[Registrar] = field(default_factory=list)
    grpc_service_names: list[str] = field(default_factory=list)
    subscriptions: list[tuple[tuple[Topic, ...], Mapping[str, EventHandler]]] = field(default_factory=list)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    singletons: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    pattern_subscriptions: list[PatternSubscription] = field(default_factory=list)
    owner_resolvers: dict[str, OwnerResolver] = field(default_factory=dict)
    partners: PartnerReplica | None = None  # the partner registry's replica, once the service started

    def serve(self, servicer: object, add_to_server: Callable[[Any, Any], None]) -> None:
        """Serve a servicer through its generated ``add_<Service>Servicer_to_server``; the service's
        full name (for health, reflection and the access policy) is read from the proto."""
        self.registrars.append(lambda server: add_to_server(servicer, server))
        self.grpc_service_names.append(grpc_service_name(add_to_server))

    def consume(self, topics: Sequence[Topic], handlers: Mapping[EventKey, EventHandler]) -> None:
        """Handle these event types (message classes) from these topics. A type no topic of them
        carries (the topic table says which) stops the service: it would never be handled."""
        self.subscriptions.append((tuple(topics), by_event_type(handlers, topics)))

    def consume_pattern(
        self,
        pattern: str,
        shaped_like: Topic,
        group: str,
        handlers: Mapping[EventKey, EventHandler],
        admit: Admission,
    ) -> None:
        """Consume every topic matching a regular expression (e.g. every partner's inbound topic),
        in its own consumer group, with an admission check before the handlers. ``shaped_like``:
        one such topic; the handlers' types are checked against what it carries."""
        keyed = by_event_type(handlers, [shaped_like])
        self.pattern_subscriptions.append(PatternSubscription(pattern, group, keyed, admit))

    def resolve_owners(self, resource: str, resolver: OwnerResolver) -> None:
        """Tell the access policy which partners a stored resource of this service belongs to."""
        self.owner_resolvers[resource] = resolver

    def owned_by(
        self,
        resource: str,
        table: type[Any],
        owners: Callable[[Any], set[str]] | Callable[[AsyncSession, Any], Awaitable[set[str]]],
    ) -> None:
        """The usual resolver, declared: the resource is a row of ``table`` by primary key, and
        ``owners`` says whose it is, from the row (or, a coroutine function, from the session and
        the row, when it takes another query). An unknown id is nobody's: the caller learns nothing."""

        queried = inspect.iscoroutinefunction(owners)

        async def resolve(key: str) -> set[str] | None:
            async with self.sessions() as session:
                row = await session.get(table, key)
                if row is None:
                    return None
                found = await owners(session, row) if queried else owners(row)  # type: ignore[call-arg, misc]
            return {p for p in found if p}  # type: ignore[union-attr]

        self.resolve_owners(resource, resolve)

    def run_in_background(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Work every replica does (its own caches, its own deliveries)."""
        self.background.append(task)

    def run_as_singleton(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Work one replica does at a time: started when this replica becomes the leader
        (ach_platform.leadership), cancelled when it stops being one."""
        self.singletons.append(task)

    def serve_http(self, app: Any, name: str) -> None:
        """Serve a plain-HTTP (ASGI) application on HTTP_PORT, in the service's loop, traced and
        measured (``http.server.duration``); nothing when HTTP_PORT is 0. No client certificate
        is asked for here: public pages, or requests the application checks itself (a gateway's
        signature, a link's token)."""
        port = self.settings.http_port
        if not port:
            return

        async def serve() -> None:
            import uvicorn
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

            class Server(uvicorn.Server):
                # The service owns the signals (its graceful stop), not uvicorn.
                @contextlib.contextmanager
                def capture_signals(self) -> Iterator[None]:
                    yield

            def span(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
                return f"{name} {scope.get('method', '')}".strip(), {}

            traced = OpenTelemetryMiddleware(app, default_span_details=span)
            config = uvicorn.Config(
                traced, host="0.0.0.0", port=port, log_config=None, access_log=False, lifespan="off"
            )
            await Server(config).serve()

        self.run_in_background(serve)


Wiring = Callable[[Runtime], None]


def by_event_type(
    handlers: Mapping[EventKey, EventHandler], topics: Sequence[Topic] | None = None
) -> dict[str, EventHandler]:
    """Handlers keyed by CloudEvents type (the message's full name), checked against what the
    topics carry: a misspelt or misplaced type would otherwise be skipped without a word."""
    keyed = {k if isinstance(k, str) else k.DESCRIPTOR.full_name: h for k, h in handlers.items()}
    if topics is not None:
        carried = {t for topic in topics for t in topic.event_types}
        unknown = sorted(set(keyed) - carried)
        if unknown:
            raise ConfigError(
                f"handlers for {', '.join(unknown)}: no topic of {', '.join(t.name for t in topics)} "
                "carries that event type (the topic table, ach_events.topics)"
            )
    return keyed


def grpc_service_name(add_to_server: Callable[[Any, Any], None]) -> str:
    """``add_FooServiceServicer_to_server`` of ``ach.x.v1.x_pb2_grpc`` -> ``ach.x.v1.FooService``."""
    name = add_to_server.__name__.removeprefix("add_").removesuffix("Servicer_to_server")
    messages = importlib.import_module(add_to_server.__module__.removesuffix("_grpc"))
    return str(messages.DESCRIPTOR.services_by_name[name].full_name)


@dataclass(frozen=True)
class Command:
    """A service's own command beside ``serve`` and ``migrate``: ``ach-<service> <name> ...``.
    ``arguments`` adds its arguments to its parser; ``run`` returns the exit status. A ConfigError
    it raises is printed as the service's one-line error (exit status 2)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    migrations_dir: Path
    wiring: Wiring
    # Tables whose presence shows the database was migrated (checked at start-up).
    required_tables: tuple[str, ...] = ("outbox_event", "inbox_event")
    commands: tuple[Command, ...] = ()


def keeping_periods() -> tuple[timedelta, timedelta]:
    """How long published outbox rows and consumed events' inbox rows are kept."""
    settings = BackboneSettings.load()
    return timedelta(days=settings.outbox_keep_days), timedelta(days=settings.inbox_keep_days)


class RunningService:
    """A started service; ``stop`` drains it. Tests start services in-process through this too."""

    def __init__(self, definition: ServiceDefinition, settings: ServiceSettings) -> None:
        self.definition = definition
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        self.outbox = Outbox(source=f"/ach/{definition.name}")
        self.runtime = Runtime(settings, self.engine, self.sessions, self.outbox)
        self.consumers: list[EventConsumer] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.grpc: GrpcServer | None = None
        self.broker: KafkaBroker | None = None
        self.relay: OutboxRelay | None = None
        self.partners: PartnerReplica | None = None
        self.leadership = Leadership.from_settings(definition.name)

    async def start(self) -> None:
        s = self.settings
        self.auth = AuthSettings.from_env()
        await check_database(self.engine, s.connect_timeout_s, tables=list(self.definition.required_tables))
        await asyncio.to_thread(ensure_topics, s.kafka_bootstrap_servers, timeout_s=s.connect_timeout_s)
        self.producer = idempotent_producer(s.kafka_bootstrap_servers, f"ach-{s.service}")
        await start_producer(self.producer, s.kafka_bootstrap_servers, s.connect_timeout_s)
        self.definition.wiring(self.runtime)

        produced = tuple(
            t.physical_name for t in ALL_TOPICS if t.producer == s.service and ".dlq." not in t.name
        )
        self.relay = OutboxRelay(self.sessions, self.producer, self.outbox, outbox_topics=produced)
        self.tasks.append(asyncio.create_task(self.relay.run(), name=f"{s.service}-outbox-relay"))
        outbox_keep, inbox_keep = keeping_periods()
        self.leadership.add(Pruner(self.sessions, outbox_keep, inbox_keep).run)
        for job in self.runtime.singletons:
            self.leadership.add(job)
        self.tasks.append(asyncio.create_task(self.leadership.campaign(), name=f"{s.service}-leadership"))
        for job in self.runtime.background:
            self.tasks.append(asyncio.create_task(job(), name=f"{s.service}-background"))

        # The registry first: consumers decide by it too (e.g. only partners receive referrals).
        self.partners = PartnerReplica(s.kafka_bootstrap_servers)
        self.runtime.partners = self.partners
        await self.partners.start(s.connect_timeout_s)

        if self.runtime.subscriptions or self.runtime.pattern_subscriptions:
            self.broker = KafkaBroker(
                s.kafka_bootstrap_servers,
                client_id=f"ach-{s.service}",
                graceful_timeout=GRACE_S,
                metadata_max_age_ms=int(s.topic_discovery_s * 1000),
                logger=None,
                security=broker_security().faststream(),
            )
            for topics, handlers in self.runtime.subscriptions:
                consumer = EventConsumer(
                    name=s.service,
                    sessions=self.sessions,
                    producer=self.producer,
                    topics=topics,
                    handlers=handlers,
                )
                consumer.subscribe(self.broker)
                self.consumers.append(consumer)
            for sub in self.runtime.pattern_subscriptions:
                consumer = EventConsumer(
                    name=s.service,
                    sessions=self.sessions,
                    producer=self.producer,
                    topics=(),
                    handlers=sub.handlers,
                    pattern=sub.pattern,
                    group=sub.group,
                    admit=sub.admit,
                )
                consumer.subscribe(self.broker)
                self.consumers.append(consumer)
            try:
                async with asyncio.timeout(s.connect_timeout_s):
                    await self.broker.start()
            except Exception as exc:
                raise BrokerUnavailable(
                    f"cannot start consumers against {s.kafka_bootstrap_servers}: {type(exc).__name__}"
                ) from None

        self.grpc = GrpcServer(
            s.grpc_port,
            self.runtime.registrars,
            self.runtime.grpc_service_names,
            auth=self.auth,
            partners=self.partners,
            resolvers=self.runtime.owner_resolvers,
            audit=KafkaAuditSink(self.producer, s.service),
            service=s.service,
            token_port=s.token_port,
            health_port=s.health_port,
        )
        await self.grpc.start()

    async def stop(self) -> None:
        """Graceful: stop taking calls and drain them, finish the record in hand, flush the outbox."""
        if self.grpc:
            await self.grpc.stop(GRACE_S)
        if self.partners:
            await self.partners.stop()
        for consumer in self.consumers:
            await consumer.stopping()
        if self.broker:
            await self.broker.stop()
        for consumer in self.consumers:
            await consumer.drained()
        if self.relay:
            await self.relay.stop()
        await self.leadership.resign()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.producer.stop()
        await self.engine.dispose()


async def serve(definition: ServiceDefinition) -> None:
    settings = ServiceSettings.from_env(definition.name)
    metrics_port = setup_telemetry(definition.name, settings.metrics_port)
    service = RunningService(definition, settings)
    try:
        await service.start()
    except BaseException:
        await service.engine.dispose()
        raise
    # What start-up loaded (catalogs, protobuf descriptors, reference tables) lives as long as the
    # process: out of the collector's way, so a full collection does not stall calls for 100+ ms.
    gc.collect()
    gc.freeze()
    log.info(
        "service started",
        extra={
            "grpc_port": settings.grpc_port,
            "metrics_port": metrics_port,
            "database": settings.database_url.split("://")[0],
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining calls and consumers")
    await service.stop()
    shutdown_telemetry()
    log.info("stopped")


def provision_topics(service: str, action: str) -> int:
    """The chart's topics Job: ``topics apply`` (``plan`` only says what it would do)."""
    from ach_events import topic_plan

    s = ServiceSettings.from_env(service)
    servers, timeout_s = s.kafka_bootstrap_servers, s.connect_timeout_s
    if action == "plan":
        done = topic_plan.plan(servers, timeout_s=timeout_s)
    else:
        done = topic_plan.apply(servers, timeout_s=timeout_s)
    for change in done.changes:
        if change.action != "unchanged":
            print(change.line())
    verb = "would change" if action == "plan" else "changed"
    print(f"topics: {len(done.pending)} {verb}; {done.summary()}", file=sys.stderr)
    return 0


def cli(definition: ServiceDefinition, argv: Sequence[str] | None = None) -> None:
    """The service's one command line: ``ach-<service> serve | migrate | <its own commands>``."""
    parser = argparse.ArgumentParser(
        prog=f"ach-{definition.name}", description=f"ACH {definition.name} service"
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    sub.add_parser("migrate", help="apply the database migrations, then exit")
    topics = sub.add_parser("topics", help="create the topic table's missing topics (never deletes)")
    topics.add_argument("action", choices=["plan", "apply"])
    topics.add_argument("--dry-run", action="store_true", help="apply: only say what it would change")
    own = {command.name: command for command in definition.commands}
    for command in definition.commands:
        command.arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    args = parser.parse_args(argv)
    try:
        if args.command in own:
            raise SystemExit(own[args.command].run(args))
        if args.command == "topics":
            raise SystemExit(provision_topics(definition.name, "plan" if args.dry_run else args.action))
        if args.command == "migrate":
            settings = ServiceSettings.from_env(definition.name)
            migrations.upgrade(definition.migrations_dir, settings.database_url)
            print(f"ach-{definition.name}: database migrated", file=sys.stderr)
        else:
            asyncio.run(serve(definition))
    except (ConfigError, BrokerUnavailable) as exc:
        print(f"ach-{definition.name}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # e.g. a migration that cannot reach the database
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError | OSError):
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            print(
                f"ach-{definition.name}: error: {first[0] if first else type(exc).__name__}", file=sys.stderr
            )
            raise SystemExit(2) from None
        raise
