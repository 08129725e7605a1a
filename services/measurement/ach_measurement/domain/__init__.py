"""Measurement's rules, pure (no I/O): the funnel counters, measure definitions, the facts they
count, periods, statistics, disparities, small-cell suppression and the scorecard's columns."""
