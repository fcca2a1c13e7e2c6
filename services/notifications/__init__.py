"""Email notifications of payment events (issue #6): receipts, dunning, refunds, expiry,
membership receipts.

`compose` turns an event into what one email must say (pure), `store` keeps the
dedupe record and send queue in Postgres, `render` and `smtp` make and send the
message, `reminders` finds credits about to expire. The notify worker
(`workers/notify.py`) ties them together.
"""
