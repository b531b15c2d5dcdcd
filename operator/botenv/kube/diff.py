"""Does the live object already hold everything we would apply?"""

from __future__ import annotations

from kubernetes.utils.quantity import parse_quantity

# Maps whose values are resource quantities, which the API server normalizes
# ("1000m" is stored as "1", "1024Mi" as "1Gi").
_QUANTITY_MAPS = ("limits", "requests")


def _same_quantity(desired: object, live: object) -> bool:
    try:
        return bool(parse_quantity(desired) == parse_quantity(live))
    except (ValueError, TypeError):
        return False


def contains(live: object, desired: object, *, quantities: bool = False) -> bool:
    """True when every field of `desired` is in `live` with the same value. Fields the
    server or other managers added are ignored, as server-side apply would leave them."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(
            contains(live.get(k), v, quantities=quantities or k in _QUANTITY_MAPS)
            for k, v in desired.items()
            if not (v in ({}, []) and live.get(k) is None)
        )
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(contains(lv, dv) for lv, dv in zip(live, desired, strict=True))
    if desired == live and type(desired) is type(live):
        return True
    return quantities and _same_quantity(desired, live)
