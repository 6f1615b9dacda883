"""The benchmark harness behind ``make bench``: corpus, targets, measurements, report."""
