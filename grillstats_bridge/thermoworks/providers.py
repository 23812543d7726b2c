"""The two ThermoWorks clouds' public Firebase web identifiers (not secrets) and real hosts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Provider:
    """One Firebase web app: what the ThermoWorks (or ETI) web app itself sends."""

    name: str
    api_key: str
    app_id: str
    referer: str


PROVIDERS: dict[str, Provider] = {
    "thermoworks": Provider(
        name="thermoworks",
        api_key="AIzaSyCf079iccUFc1k7VHdGXng22zXDy8Y3KEY",
        app_id="1:78998049458:web:b41e9d405d8c7de95eefab",
        referer="https://cloud.thermoworks.com/",
    ),
    "eti": Provider(
        name="eti",
        api_key="AIzaSyBD4snlT2LllO4k0NywX5qYjJ7M7WfU4_I",
        app_id="1:701566661301:web:7a9bc711c05985ead144fc",
        referer="https://cloud.etiltd.com/",
    ),
}

# The project id the ThermoWorks web config answers with (looked up, not assumed).
THERMOWORKS_PROJECT_ID = "thermoworks-cloud-production"

IDENTITYTOOLKIT_URL = "https://identitytoolkit.googleapis.com"
SECURETOKEN_URL = "https://securetoken.googleapis.com"
FIREBASE_URL = "https://firebase.googleapis.com"
FIRESTORE_URL = "https://firestore.googleapis.com"
