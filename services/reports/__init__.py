"""Reports for finance and product: revenue, credits and liability, packs, churn, promos."""
