"""Conversion of MiniGPT models to and from other formats (Hugging Face `transformers`)."""
