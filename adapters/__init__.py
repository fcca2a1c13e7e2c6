"""Adapters: the code that speaks an outside provider's language on behalf of `services/`.

`services/` declares what it needs as ports (`services/purchases/ports.py`,
`services/memberships/ports.py`) and never imports an adapter; the ingress and the
operator commands build the adapter and hand it in.
"""
