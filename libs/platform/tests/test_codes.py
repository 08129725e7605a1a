from __future__ import annotations

import pytest
from ach.referrals.v1 import referrals_pb2
from ach_platform.codes import code_of, value_of


def test_round_trip_every_referral_status() -> None:
    for value in referrals_pb2.ReferralStatus.values():
        assert value_of(referrals_pb2.ReferralStatus, code_of(referrals_pb2.ReferralStatus, value)) == value
    assert code_of(referrals_pb2.ReferralStatus, referrals_pb2.REFERRAL_STATUS_IN_PROGRESS) == "in-progress"
    assert code_of(referrals_pb2.ReferralOutcome, referrals_pb2.REFERRAL_OUTCOME_UNSPECIFIED) == ""
    assert value_of(referrals_pb2.ReferralOutcome, "need-met") == referrals_pb2.REFERRAL_OUTCOME_NEED_MET


def test_unknown_code_is_an_error() -> None:
    with pytest.raises(ValueError):
        value_of(referrals_pb2.ReferralStatus, "lost")
