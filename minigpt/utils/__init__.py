"""Small helpers that have no better home."""
