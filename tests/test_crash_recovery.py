"""Kill a service between commit and publish, restart it: the downstream projection counts each
event exactly once. Two places to die: after the commit but before sending to Kafka (the events wait
in the outbox), and after Kafka acknowledged but before the rows were marked (they are sent again
and the consumer's inbox drops the copies)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ach.measurement.v1 import measurement_pb2, measurement_pb2_grpc
from ach.screening.v1 import screening_pb2_grpc

from tests.harness import Stack, eventually
from tests.test_walking_skeleton import screening_request

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("failpoint", ["relay.before_send", "relay.after_send"])
def test_kill_between_commit_and_publish_counts_once(
    make_stack: Callable[[str], Stack], failpoint: str
) -> None:
    stack = make_stack("sqlite")
    stack.start("measurement")
    screening = stack.add("screening")
    screening.start({"ACH_FAILPOINT": failpoint})
    screening.wait_healthy()

    resident = stack.resident("clinic-1")
    first = screening_request(resident)
    try:
        with stack.channel("screening", "clinic-1") as channel:
            screening_pb2_grpc.ScreeningServiceStub(channel).SubmitScreening(first, timeout=5)
    except Exception:
        pass
    assert screening.wait_exit(30) == 137, "the failpoint did not kill the service"

    screening.start()  # no failpoint: the relay finds the unpublished rows
    screening.wait_healthy()
    with stack.channel("screening", "clinic-1") as channel:
        stub = screening_pb2_grpc.ScreeningServiceStub(channel)
        # The same screening again is answered from what was committed before the crash: no new events.
        again = stub.SubmitScreening(first, timeout=5)
        assert list(again.positive_domains) == ["food-insecurity"]
        # A second screening for the same resident (same key, same partition) queues behind any copies.
        stub.SubmitScreening(screening_request(resident), timeout=5)

    with stack.channel("measurement") as channel:
        measurement = measurement_pb2_grpc.MeasurementServiceStub(channel)

        def funnel() -> measurement_pb2.ReferralFunnel:
            result: measurement_pb2.ReferralFunnel = measurement.GetReferralFunnel(
                measurement_pb2.GetReferralFunnelRequest(), timeout=5
            )
            return result

        eventually(lambda: funnel().screenings_completed >= 2, what="both screenings counted")
        counted = funnel()
    assert (counted.screenings_completed, counted.needs_identified) == (2, 2), (
        "an event was lost or counted twice"
    )
    assert stack.stop_all() == {"identity": 0, "measurement": 0, "screening": 0}
