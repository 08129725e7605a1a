"""The event backbone's settings: how long it keeps what, how topics are made, how its Kafka
clients authenticate (read once, checked; a bad value names its variable)."""

from __future__ import annotations

from typing import Annotated

from ach_platform.settings import Settings, checked, whole_number
from pydantic import Field, SecretStr


class BackboneSettings(Settings):
    # Dead letters are kept for ops to look at and replay, then dropped.
    dlq_retention_days: Annotated[
        int, checked(whole_number(1, 30, "days")), Field(validation_alias="ACH_DLQ_RETENTION_DAYS")
    ] = 7
    kafka_replication_factor: Annotated[int, checked(whole_number(1, 7))] = 1
    # false in a deployed cluster: the chart's topics Job creates them (as a principal allowed to);
    # a service then only waits, at start-up, for the topics it needs to exist.
    kafka_create_topics: bool = True
    # Published outbox rows and consumed events' inbox rows are pruned after these (the inbox's is
    # longer than any redelivery).
    outbox_keep_days: Annotated[int, checked(whole_number(1, 3650, "days"))] = 7
    inbox_keep_days: Annotated[int, checked(whole_number(1, 3650, "days"))] = 30


def _protocol(raw: str) -> str:
    if raw.upper() not in PROTOCOLS:
        raise ValueError(f"is not one of {', '.join(sorted(PROTOCOLS))}")
    return raw.upper()


def _mechanism(raw: str) -> str:
    if raw.upper() not in MECHANISMS:
        raise ValueError(f"is not one of {', '.join(sorted(MECHANISMS))}")
    return raw.upper()


PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
MECHANISMS = frozenset({"SCRAM-SHA-256", "SCRAM-SHA-512"})


class KafkaSecuritySettings(Settings):
    """KAFKA_SECURITY_PROTOCOL and the rest (see ach_events.kafka_security)."""

    kafka_security_protocol: Annotated[str, checked(_protocol)] = "PLAINTEXT"
    kafka_sasl_mechanism: Annotated[str, checked(_mechanism)] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_sasl_password_file: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
