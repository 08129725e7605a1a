"""Screening intake: takes social-needs screenings in, scores them, and emits identified needs."""
