"""Verified Stripe events: the webhook inbox (`stripe_events`) and the evidence behind
the command each event stands for. What an event means is the Stripe adapter's to say
(`adapters/stripe/events.py`); this package only records it, and never imports it."""
