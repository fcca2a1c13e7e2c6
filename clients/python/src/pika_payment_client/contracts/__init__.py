"""The service's wire contracts (commands, events, HTTP and WebSocket models),
copied from its `schemas/` package by `make client-contracts`: never edited here."""
