"""Codes every service speaks: need domains (Gravity SDOH categories) and language tags."""

from __future__ import annotations

import re

GRAVITY_SYSTEM = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
# Gravity SDOH category codes (domain brief): what a screening finds and a service addresses.
NEED_DOMAINS = frozenset(
    {
        "food-insecurity",
        "housing-instability",
        "homelessness",
        "inadequate-housing",
        "transportation-insecurity",
        "utility-insecurity",
        "financial-insecurity",
        "material-hardship",
        "employment-status",
        "educational-attainment",
        "intimate-partner-violence",
        "elder-abuse",
        "social-connection",
        "stress",
        "health-insurance-coverage-status",
        "medical-cost-burden",
        "digital-access",
        "digital-literacy",
        "language-access",
        "incarceration-status",
        "veteran-status",
        "personal-health-literacy",
        "protective-factor",
        "sdoh-category-unspecified",
    }
)
# A BCP 47 language tag, e.g. "en", "es", "es-MX", "zh-Hant".
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
