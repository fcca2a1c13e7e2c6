"""The development toolkit: local stack, demo seed, tokens, benchmarks, fault suite.

Run from a source checkout with `python -m devtools COMMAND`; it is not in the
production wheel or image, and no production module imports it.
"""
