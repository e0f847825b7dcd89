"""Evaluation: perplexity, task accuracy, reports and plots."""
