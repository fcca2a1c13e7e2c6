"""Retention of the service's working tables (outbox, command ids, Stripe webhook inbox,
notification claims and expiry reminders)."""
