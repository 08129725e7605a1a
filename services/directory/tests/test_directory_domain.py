"""Directory validation, without I/O."""

from __future__ import annotations

from ach_directory.domain import ServiceDraft, validate_service


def test_valid_service() -> None:
    assert validate_service(ServiceDraft("s", "o", "Pantry", ("food-insecurity",), ("en", "es"), 3, 10)) == []


def test_every_problem_is_named() -> None:
    problems = validate_service(ServiceDraft("", "o", " ", ("food", "stress"), ("english",), 11, 10))
    assert {p.field for p in problems} == {
        "service.service_id",
        "service.name",
        "service.need_domains[0]",
        "service.languages[0]",
        "service.capacity_available",
    }
