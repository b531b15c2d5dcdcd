"""Typed specs parsed from custom resource bodies, with field-path errors."""

from botenv import API_VERSION
from botenv.api.environment import EnvironmentSpec, parse_environment
from botenv.api.errors import SpecError
from botenv.api.tag import TagSpec, parse_tag

__all__ = [
    "API_VERSION",
    "EnvironmentSpec",
    "SpecError",
    "TagSpec",
    "parse_environment",
    "parse_tag",
]
