"""MiniGPT: train a small GPT from nothing and carry it through every stage of a modern LLM."""

__version__ = "0.1.0"
