"""What every ACH service starts with: settings, database, gRPC server bootstrap and telemetry."""
