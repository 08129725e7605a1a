"""`make bench`: the platform's benchmarks; each prints a table and writes bench/results.json."""
