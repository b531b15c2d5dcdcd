"""The operator's kopf wiring: watches feed indexes and a work queue; reconcilers do the rest.

Importing this package registers the handlers with kopf.
"""

from botenv.runtime import operator  # noqa: F401
