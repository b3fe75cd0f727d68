"""The model index (placeholder until issue 2 lands)."""
