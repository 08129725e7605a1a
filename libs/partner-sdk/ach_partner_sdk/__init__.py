"""The ACH partner SDK: a partner system (an EHR, a community health worker's app, a CBO's case
management) publishes on its own inbound topic and reads its own outbound topic.

    from ach_partner_sdk import PartnerClient

    with PartnerClient("chw-trustbuilders", "kafka.example:9094", password=pw, cafile="ca.pem") as client:
        client.submit_screening(submission)          # ach.screening.v1.SubmitScreeningRequest
        for reply in client.replies(timeout_s=30):   # ScreeningAccepted / ScreeningRejected
            ...

Any Kafka client can do the same: see ``envelope`` for the record format.
"""

from ach_partner_sdk.client import PartnerClient, Reply
from ach_partner_sdk.envelope import PartnerEvent, inbound_topic, outbound_topic

__all__ = ["PartnerClient", "PartnerEvent", "Reply", "inbound_topic", "outbound_topic"]
