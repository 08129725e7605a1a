"""Partner notifications: id-only messages to partners about referrals that concern them."""
