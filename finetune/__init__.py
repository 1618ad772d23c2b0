"""Staged fine-tuning of exported encoders with a task head."""
