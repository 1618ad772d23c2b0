"""Paper-style experiments: strategies x label budgets x seeds."""
