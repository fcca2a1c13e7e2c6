"""Promo codes: discounts, bonus credits and free trials, with limits that hold under load."""
