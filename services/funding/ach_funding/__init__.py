"""Funding: the Wellness Fund's double-entry ledger, paying CBOs for closed referrals."""
