"""The ACH event backbone: CloudEvents envelope on Kafka, transactional outbox, idempotent inbox,
dead letters, and the table of topics."""
