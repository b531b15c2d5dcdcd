"""Thin kopf handlers: watches feed indexes and a work queue; reconcilers do the rest.

Importing this package registers the handlers with kopf.
"""

from botenv.handlers import operator  # noqa: F401
