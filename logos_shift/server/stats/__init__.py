"""Statistics: intervals, always-valid sequential bounds, per-variant summaries."""
