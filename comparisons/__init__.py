"""NYC-taxi comparisons: the canonical data, the problem set and per-engine solutions."""
