"""achctl: the ops command line for county IT running the platform.

    achctl status                     Deployments (ready, restarts), consumer lag, dead letters, outboxes
    achctl dlq list|show|replay       dead letters, and sending one back to its source topic once fixed
    achctl topics plan|apply          the topic table on the broker (never deletes)
    achctl projection rebuild         measurement's projections, rebuilt from offset zero
    achctl partners ...               the identity service's partner registry
    achctl directory import ...       an HSDS data package into the directory

The cluster is the kubeconfig's (--kubeconfig, $KUBECONFIG, ~/.kube/config) or, inside a pod, its
service account; the broker is KAFKA_BOOTSTRAP_SERVERS with the platform's TLS/SASL settings.
Anything unreachable or unknown: one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from ach_events.topics import BrokerUnavailable
from ach_platform.settings import ConfigError, kafka_bootstrap_servers
from rich.console import Console
from rich.table import Table

from achctl.backbone import Backbone, UnknownDeadLetter, consuming_services, parse_id
from achctl.cluster import ClusterUnavailable, api_client, deployment_health
from achctl.outboxes import outbox_backlog

app = typer.Typer(
    help="Operate the ACH platform: status, dead letters, topics, projections.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dlq = typer.Typer(help="Dead letters: list, show, replay to the source topic.", no_args_is_help=True)
topics = typer.Typer(help="The topic table on the broker: plan, apply (never deletes).", no_args_is_help=True)
projection = typer.Typer(help="Measurement's projections.", no_args_is_help=True)
directory = typer.Typer(help="The resource directory.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
app.add_typer(topics, name="topics")
app.add_typer(projection, name="projection")
app.add_typer(directory, name="directory")

# Wide when piped (a log, a test): a table is not wrapped into a column of fragments.
out = Console(width=None if sys.stdout.isatty() else 200)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="the release's namespace")]
Kubeconfig = Annotated[Path | None, typer.Option(help="kubeconfig file (else $KUBECONFIG or ~/.kube/config)")]
Context = Annotated[str | None, typer.Option(help="kubeconfig context")]


class Refused(Exception):
    """A one-line error with its exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


@app.command()
def status(
    namespace: Namespace = "ach",
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    cluster: Annotated[bool, typer.Option(help="read Deployments from the Kubernetes API")] = True,
    outboxes: Annotated[bool, typer.Option(help="read each service's outbox from its database")] = True,
) -> None:
    """Each Deployment's ready replicas and restarts; per service, consumer lag, dead letters, outbox."""
    unready = 0
    if cluster:
        health = deployment_health(api_client(kubeconfig, context), namespace)
        table = Table(title=f"Deployments in {namespace}")
        for column in ("service", "ready", "up to date", "restarts"):
            table.add_column(column, justify="left" if column == "service" else "right")
        for d in health:
            mark = "" if d.healthy else " [red](not ready)[/red]"
            table.add_row(d.service, f"{d.ready}/{d.desired}{mark}", str(d.updated), str(d.restarts))
            unready += 0 if d.healthy else 1
        if not health:
            table.add_row("(no ach-platform Deployments)", "", "", "")
        out.print(table)
    backbone = Backbone(kafka_bootstrap_servers())
    try:
        table = Table(title="Events")
        for column in ("service", "consumer lag", "dead letters", "outbox waiting", "oldest", "set aside"):
            table.add_column(column, justify="left" if column == "service" else "right")
        services = consuming_services()
        from ach_platform.settings import DEFAULT_PORTS

        for service in DEFAULT_PORTS:
            lag = backbone.consumer_lag(service) if service in services else None
            letters = backbone.dead_letter_count(service) if service in services else None
            backlog = outbox_backlog(service) if outboxes else None
            cells = [
                "-" if lag is None else str(lag),
                "-" if letters is None else str(letters),
            ]
            if backlog is None:
                cells += ["", "", ""]
            elif backlog.waiting is None:
                cells += [backlog.problem, "", ""]
            else:
                age = "" if backlog.oldest_age_s is None else f"{backlog.oldest_age_s:.0f} s"
                cells += [str(backlog.waiting), age, str(backlog.set_aside)]
            table.add_row(service, *cells)
        out.print(table)
    finally:
        backbone.close()
    if unready:
        raise Refused(f"{unready} Deployment(s) not ready", status=1)


@dlq.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="one consuming service")] = None,
) -> None:
    """Dead letters still retained: id, when, the event's type, where it came from, why."""
    services = consuming_services()
    if consumer is not None and consumer not in services:
        raise Refused(f"no consumer {consumer[:40]!r} (one of {', '.join(services)})", status=1)
    backbone = Backbone(kafka_bootstrap_servers())
    try:
        table = Table(title="Dead letters")
        for column in ("id", "time", "event type", "source topic", "attempts", "reason"):
            table.add_column(column)
        count = 0
        for service in [consumer] if consumer else services:
            for letter in backbone.dead_letters(service):
                count += 1
                table.add_row(
                    letter.id,
                    letter.info.get("time", "")[:19],
                    letter.event_type,
                    letter.source_topic,
                    letter.info.get("attempts", ""),
                    letter.reason[:160],
                )
        out.print(table)
        out.print(f"{count} dead letter(s)")
    finally:
        backbone.close()


@dlq.command("show")
def dlq_show(dead_letter_id: Annotated[str, typer.Argument(help="<consumer>:<partition>:<offset>")]) -> None:
    """One dead letter: why, where from, its event's headers and size (its body can hold PHI and is
    not printed)."""
    parse_id(dead_letter_id)
    backbone = Backbone(kafka_bootstrap_servers())
    try:
        letter = backbone.dead_letter(dead_letter_id)
    finally:
        backbone.close()
    table = Table(title=f"Dead letter {letter.id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for name, value in sorted(letter.info.items()):
        table.add_row(name.replace("_", " "), value)
    table.add_row("event id", letter.event_id)
    table.add_row("event type", letter.event_type)
    table.add_row("event time", letter.header("ce_time"))
    table.add_row("body", "omitted" if letter.value is None else f"{len(letter.value)} bytes")
    out.print(table)


@dlq.command("replay")
def dlq_replay(
    dead_letter_id: Annotated[str, typer.Argument(help="<consumer>:<partition>:<offset>")],
    operator: Annotated[str, typer.Option(help="who replays it (the audit log's user)")] = "",
) -> None:
    """Send a dead letter's event back to its source topic (after the fix is deployed); the consumer's
    inbox keeps it from taking effect twice. Recorded in the audit log."""
    parse_id(dead_letter_id)
    backbone = Backbone(kafka_bootstrap_servers())
    try:
        letter = backbone.dead_letter(dead_letter_id)
        topic = backbone.replay(letter, operator)
    finally:
        backbone.close()
    out.print(f"replayed {letter.id} ({letter.event_type}, event {letter.event_id}) to {topic}")


@topics.command("plan")
def topics_plan() -> None:
    """What apply would change."""
    _topics("plan")


@topics.command("apply")
def topics_apply(
    dry_run: Annotated[bool, typer.Option(help="only say what it would change")] = False,
) -> None:
    """Create missing topics and set drifted configs; never deletes, never repartitions."""
    _topics("plan" if dry_run else "apply")


def _topics(action: str) -> None:
    from ach_events import topic_plan

    servers = kafka_bootstrap_servers()
    done = topic_plan.plan(servers) if action == "plan" else topic_plan.apply(servers)
    table = Table(title="Topics")
    table.add_column("action")
    table.add_column("topic")
    table.add_column("detail")
    for change in done.changes:
        if change.action != "unchanged":
            table.add_row(change.action, change.topic, change.detail)
    out.print(table)
    verb = "would change" if action == "plan" else "changed"
    out.print(f"topics: {len(done.pending)} {verb}; {done.summary()}")


@projection.command("rebuild", context_settings=PASS_THROUGH)
def projection_rebuild(ctx: typer.Context) -> None:
    """ach-measurement rebuild (its options follow)."""
    _service_command("measurement", ["rebuild", *ctx.args])


@app.command(context_settings=PASS_THROUGH)
def partners(ctx: typer.Context) -> None:
    """ach-identity partners ... (list, register, suspend, ...)."""
    _service_command("identity", ["partners", *ctx.args])


@directory.command("import", context_settings=PASS_THROUGH)
def directory_import(ctx: typer.Context) -> None:
    """ach-directory import ... (an HSDS CSV data package or JSON file)."""
    _service_command("directory", ["import", *ctx.args])


def _service_command(service: str, argv: list[str]) -> None:
    """The service's own command, with this environment (its database and broker settings)."""
    program = shutil.which(f"ach-{service}") or str(Path(sys.executable).parent / f"ach-{service}")
    if not Path(program).exists():
        raise Refused(f"ach-{service} is not installed here (make setup installs it)")
    os.execv(program, [program, *argv])


def main() -> None:
    try:
        app()
    except Refused as exc:
        _fail(str(exc), exc.status)
    except UnknownDeadLetter as exc:
        _fail(str(exc), 1)
    except (ClusterUnavailable, BrokerUnavailable, ConfigError) as exc:
        _fail(str(exc), 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, status: int) -> None:
    print(f"achctl: error: {message}", file=sys.stderr)
    raise SystemExit(status)
