"""Leader election for a service's singleton work (the referral timers' sweeper, outbox pruning,
the ledger's reservation sweep, a projection rebuild's switch-over): one replica does it.

In a cluster the replicas compete for a ``coordination.k8s.io`` Lease, as client-go's
leaderelection does: the holder renews it every retry period; the others take it over once they
have seen it unrenewed for a whole lease duration (timed on their own clock, so skew between nodes
does not matter), or at once when the holder released it on a graceful stop. The database stays the
guarantee that each timer fires once; the lease only makes one replica do the work.

Written here rather than with the ``kubernetes`` client's ``LeaseLock``: that one never releases on
shutdown (a rolling update waits a full lease duration), compares naive datetimes, and writes times
the API server's MicroTime refuses when the microseconds are zero.

Outside a cluster (the local stack, tests) every replica leads: ``ACH_LEADER_ELECTION=off``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Literal

from opentelemetry import metrics
from pydantic import Field

from ach_platform.settings import ConfigError, Settings, at_least, checked

log = logging.getLogger(__name__)

Work = Callable[[], Coroutine[Any, Any, None]]


class LeadershipSettings(Settings):
    # kubernetes: compete for a Lease (the chart sets it, with POD_NAME and POD_NAMESPACE from the
    # downward API); off: this process leads (one process, or no cluster).
    ach_leader_election: Literal["off", "kubernetes"] = "off"
    # The Lease's name; the service's name when empty (one Lease per service and release).
    ach_lease_name: str = ""
    pod_name: str = ""
    pod_namespace: str = Field(default="", validation_alias="POD_NAMESPACE")
    ach_lease_duration_s: Annotated[float, checked(at_least(1))] = 15
    ach_lease_renew_deadline_s: Annotated[float, checked(at_least(0.5))] = 10
    ach_lease_retry_s: Annotated[float, checked(at_least(0.1))] = 2


class Attempt(enum.Enum):
    LEADING = "leading"
    FOLLOWING = "following"
    UNKNOWN = "unknown"  # the API server did not answer: keep what we had until the renew deadline


def micro_time(moment: dt.datetime) -> str:
    """RFC 3339 with exactly six fractional digits, as the API server's MicroTime wants."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseLock:
    """One Lease object: read, create, take over, renew, release. Every write names the version it
    read, so two candidates racing for an expired lease cannot both win."""

    def __init__(self, api: Any, namespace: str, name: str, identity: str, duration_s: float) -> None:
        self.api = api  # kubernetes.client.CoordinationV1Api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self._observed: tuple[str, Any, Any] | None = None  # (holder, renewed, transitions) last seen
        self._observed_at = 0.0

    def try_acquire_or_renew(self) -> Attempt:
        from kubernetes.client.exceptions import ApiException

        now = dt.datetime.now(dt.UTC)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._write(None, self._spec(now, now, 0), create=True)
        spec = lease.spec
        holder = spec.holder_identity or ""
        record = (holder, spec.renew_time, spec.lease_transitions)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = spec.lease_duration_seconds or self.duration_s
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return Attempt.FOLLOWING
        transitions = spec.lease_transitions or 0
        if holder == self.identity:
            acquired = spec.acquire_time or now
        else:
            acquired, transitions = now, transitions + 1
        spec = self._spec(acquired, now, transitions)
        return self._write(lease.metadata.resource_version, spec, create=False)

    @property
    def holder(self) -> str:
        """Who held the lease when it was last read."""
        return self._observed[0] if self._observed else ""

    def release(self) -> bool:
        """Give the lease up if we hold it, so another replica takes it at its next try."""
        lease = self.api.read_namespaced_lease(self.name, self.namespace)
        if (lease.spec.holder_identity or "") != self.identity:
            return False
        now = dt.datetime.now(dt.UTC)
        spec = {
            "leaseDurationSeconds": 1,
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": lease.spec.lease_transitions or 0,
        }
        return self._write(lease.metadata.resource_version, spec, create=False) is Attempt.LEADING

    def _spec(self, acquired: dt.datetime, renewed: dt.datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration_s)),
            "acquireTime": micro_time(acquired),
            "renewTime": micro_time(renewed),
            "leaseTransitions": transitions,
        }

    def _write(self, version: str | None, spec: dict[str, Any], create: bool) -> Attempt:
        from kubernetes.client.exceptions import ApiException

        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        try:
            if create:
                self.api.create_namespaced_lease(self.namespace, body)
            else:
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status in (409, 422):  # someone else wrote first (409), or created it first
                return Attempt.FOLLOWING
            raise
        return Attempt.LEADING


class Leadership:
    """Runs the singleton work while this replica leads, and stops it when it does not."""

    def __init__(
        self,
        lock: LeaseLock | None,
        renew_deadline_s: float = 10,
        retry_s: float = 2,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        # on_change: told True when this replica starts leading, False when it stops.
        self.lock = lock
        self.renew_deadline_s = renew_deadline_s
        self.retry_s = retry_s
        self.on_change = on_change
        self.leading = False
        self._work: list[Work] = []
        self._running: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._failures = 0
        metrics.get_meter(__name__).create_observable_gauge(
            "ach_leader",
            callbacks=[lambda _options: [metrics.Observation(int(self.leading))]],
            description="1 while this replica leads its service's singleton work (timers, pruning, sweeps)",
        )

    @classmethod
    def from_settings(cls, service: str, on_change: Callable[[bool], None] | None = None) -> Leadership:
        s = LeadershipSettings.load()
        if s.ach_leader_election == "off":
            return cls(None, on_change=on_change)
        if not s.pod_name or not s.pod_namespace:
            raise ConfigError("ACH_LEADER_ELECTION=kubernetes: set POD_NAME and POD_NAMESPACE (downward API)")
        if s.ach_lease_renew_deadline_s >= s.ach_lease_duration_s:
            raise ConfigError("ACH_LEASE_RENEW_DEADLINE_S must be shorter than ACH_LEASE_DURATION_S")
        name = s.ach_lease_name or service
        lock = LeaseLock(coordination_api(), s.pod_namespace, name, s.pod_name, s.ach_lease_duration_s)
        return cls(lock, s.ach_lease_renew_deadline_s, s.ach_lease_retry_s, on_change)

    def add(self, work: Work) -> None:
        self._work.append(work)

    async def campaign(self) -> None:
        """Until ``resign``: try to lead every retry period; start or stop the work as that changes."""
        if self.lock is None:
            self._set(True)
            await self._stopped.wait()
            return
        last_renewed = 0.0
        while not self._stopped.is_set():
            attempt = await self._attempt()
            if attempt is Attempt.LEADING:
                last_renewed = time.monotonic()
                self._set(True)
            elif attempt is Attempt.FOLLOWING or time.monotonic() - last_renewed > self.renew_deadline_s:
                self._set(False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.retry_s)

    async def resign(self) -> None:
        """On a graceful stop: stop the work, then give the lease up for the next replica at once."""
        self._stopped.set()
        await self._stop_work()
        if self.lock is not None and self.leading:
            self.leading = False
            try:
                released = await asyncio.to_thread(self.lock.release)
            except Exception as exc:  # the lease then simply expires
                log.warning("could not release the lease", extra={"error": type(exc).__name__})
            else:
                log.info("lease released", extra={"lease": self.lock.name, "released": released})

    async def _attempt(self) -> Attempt:
        assert self.lock is not None
        try:
            attempt = await asyncio.to_thread(self.lock.try_acquire_or_renew)
        except Exception as exc:
            self._failures += 1
            if self._failures == 1 or self._failures % 30 == 0:
                log.warning(
                    "cannot reach the Kubernetes API for the lease",
                    extra={"lease": self.lock.name, "error": type(exc).__name__, "failures": self._failures},
                )
            return Attempt.UNKNOWN
        self._failures = 0
        return attempt

    def _set(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        name = self.lock.name if self.lock else "(no election)"
        log.info("leading" if leading else "no longer leading", extra={"lease": name})
        if leading:
            self._running = [asyncio.create_task(work(), name=f"singleton-{name}") for work in self._work]
        else:
            asyncio.get_running_loop().create_task(self._stop_work())
        if self.on_change:
            self.on_change(leading)

    async def _stop_work(self) -> None:
        running, self._running = self._running, []
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def coordination_api() -> Any:
    """The Lease API as the pod's service account (in a cluster), else as the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.CoordinationV1Api()


class HeldElsewhere(Exception):
    """Another process holds the lease for this work."""


@contextlib.asynccontextmanager
async def exclusively(service: str, work: str) -> AsyncIterator[None]:
    """Hold the lease ``<the service's lease>-<work>`` for the length of one piece of work (a
    projection rebuild and its switch-over): refused at once if another process holds it, renewed
    meanwhile, released at the end. Without a cluster (ACH_LEADER_ELECTION=off) the work just runs."""
    s = LeadershipSettings.load()
    if s.ach_leader_election == "off":
        yield
        return
    lease = f"{s.ach_lease_name or service}-{work}"
    identity = s.pod_name or f"{socket.gethostname()}-{os.getpid()}"
    namespace = s.pod_namespace or "default"
    lock = LeaseLock(coordination_api(), namespace, lease, identity, s.ach_lease_duration_s)
    if await asyncio.to_thread(lock.try_acquire_or_renew) is not Attempt.LEADING:
        holder = lock.holder or "another process"
        raise HeldElsewhere(f"lease {lease} is held by {holder}: that work is running there")

    async def renew() -> None:
        while True:
            await asyncio.sleep(s.ach_lease_retry_s)
            with contextlib.suppress(Exception):  # a missed renewal is retried; the lease outlives several
                await asyncio.to_thread(lock.try_acquire_or_renew)

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(lock.release)
