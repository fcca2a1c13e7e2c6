"""Fraud monitoring: rules the ledger worker evaluates, flags an admin resolves."""
