"""Closed-loop referrals: from an identified need to a CBO, through the Gravity Task lifecycle."""
