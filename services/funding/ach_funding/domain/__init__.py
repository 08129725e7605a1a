"""Funding's rules, pure (no I/O): the double-entry ledger, fund streams and how spending is
allocated to them, and the outcome payments a referral earns."""
