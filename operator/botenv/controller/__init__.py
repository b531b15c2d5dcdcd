"""Reconcile flows: gather inputs (indexes, Secrets), render, apply, report status."""
