"""Placement and drain-planning benchmarks on the real fleets in ../shared/data."""
