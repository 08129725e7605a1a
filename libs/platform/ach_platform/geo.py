"""Distances on the Earth, pure: the directory's search and the referral service's matching both
measure how far a place is from a resident."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle (haversine) distance."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def bounding_box(point: tuple[float, float], radius_km: float) -> tuple[float, float, float, float]:
    """min lat, max lat, min lon, max lon around a point (for an index to narrow the candidates)."""
    lat, lon = point
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM)
    cos = max(math.cos(math.radians(lat)), 1e-6)
    dlon = min(180.0, dlat / cos)
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon
