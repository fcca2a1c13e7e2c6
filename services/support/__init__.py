"""Support console (read side): find a customer and explain their balance.

Reads only: every change a support agent makes is a command through the normal path.
The SQL is in the `*_queries` modules, the units of work in `use_cases`.
"""
