"""The former home of the kopf handlers, now in botenv.runtime; importing this package
still registers them (for `kopf run -m botenv.handlers` and older imports)."""

from botenv.runtime import operator  # noqa: F401
