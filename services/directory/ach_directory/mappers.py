"""Service records as the Service message other services and partners read, and summaries as
the record's fields."""

from __future__ import annotations

from typing import Any

from ach.directory.v1 import directory_pb2
from ach_platform.clock import to_timestamp
from ach_platform.opening_hours import Hours

from ach_directory.domain.search import Place
from ach_directory.domain.summary import Summary
from ach_directory.store import ServiceRecord

STATUS = {
    "active": directory_pb2.SERVICE_STATUS_ACTIVE,
    "inactive": directory_pb2.SERVICE_STATUS_INACTIVE,
    "defunct": directory_pb2.SERVICE_STATUS_DEFUNCT,
    "temporarily closed": directory_pb2.SERVICE_STATUS_TEMPORARILY_CLOSED,
}


def record_fields(s: Summary) -> dict[str, Any]:
    return {
        "organization_id": s.organization_id,
        "name": s.name,
        "description": s.description,
        "status": STATUS.get(s.status, directory_pb2.SERVICE_STATUS_ACTIVE),
        "need_domains": list(s.need_domains),
        "languages": list(s.languages),
        "capacity_available": s.capacity_available,
        "capacity_maximum": s.capacity_maximum,
        "capacity_waitlist": s.capacity_waitlist,
        "minimum_age": s.minimum_age,
        "maximum_age": s.maximum_age,
        "eligibility_description": s.eligibility_description,
        "partner_id": s.partner_id,
        "organization_name": s.organization_name,
        "phone": s.phone,
        "locations": [
            {
                "location_id": p.location_id,
                "name": p.name,
                "latitude": p.latitude,
                "longitude": p.longitude,
                "postal_code": p.postal_code,
                "virtual": p.virtual,
                "address": p.address,
            }
            for p in s.places
        ],
        "opening_hours": [h.__dict__.copy() for h in s.hours],
        "service_area_zips": list(s.area_zips),
        "service_area_radius_km": s.area_radius_km,
        "term_ids": list(s.term_ids),
        "search_text": s.text,
        "source": "hsds-import",
        "remote": any(p.virtual for p in s.places),
    }


def places_of(record: ServiceRecord) -> tuple[Place, ...]:
    return tuple(
        Place(
            location_id=str(p["location_id"]),
            name=str(p.get("name") or ""),
            latitude=p.get("latitude"),
            longitude=p.get("longitude"),
            postal_code=str(p.get("postal_code") or ""),
            virtual=bool(p.get("virtual")),
            address=str(p.get("address") or ""),
        )
        for p in record.locations
    )


def hours_of_record(record: ServiceRecord) -> tuple[Hours, ...]:
    return tuple(Hours(**h) for h in record.opening_hours)


def to_proto(r: ServiceRecord) -> directory_pb2.Service:
    return directory_pb2.Service(
        service_id=r.id,
        organization_id=r.organization_id,
        name=r.name,
        description=r.description,
        status=r.status,  # type: ignore[arg-type]
        need_domains=r.need_domains,
        claimed_need_domains=r.claimed_need_domains,
        languages=r.languages,
        capacity_available=r.capacity_available,
        capacity_maximum=r.capacity_maximum,
        updated_at=to_timestamp(r.updated_at),
        locations=[
            directory_pb2.ServiceLocation(
                location_id=p.location_id,
                name=p.name,
                latitude=p.latitude or 0.0,
                longitude=p.longitude or 0.0,
                postal_code=p.postal_code,
                virtual=p.virtual,
                address=p.address,
            )
            for p in places_of(r)
        ],
        minimum_age=r.minimum_age,
        maximum_age=r.maximum_age,
        service_area_zips=r.service_area_zips,
        service_area_radius_km=r.service_area_radius_km,
        opening_hours=[directory_pb2.OpeningHours(**h.__dict__) for h in hours_of_record(r)],
        capacity_waitlist=r.capacity_waitlist,
        eligibility_description=r.eligibility_description,
        source=r.source,
        partner_id=r.partner_id,
        organization_name=r.organization_name,
        phone=r.phone,
    )
