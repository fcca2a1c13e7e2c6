"""Memberships: plans, Stripe subscriptions and the credits each paid period grants."""
