"""Measurement: projections of the network's events into the closed-loop funnel and indicators."""
