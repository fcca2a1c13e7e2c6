"""The support console's admin actions and their audit trail (issue 16).

Each action is a command through the normal path; what the admin asked for, and why,
is recorded append-only in `admin_actions`, with the command's evidence, before the
command is published. The outcome is never copied into it: the audit reads it from
`processed_commands` and `ledger_transactions` by the command id.
"""
