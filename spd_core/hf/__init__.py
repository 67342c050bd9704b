"""Hugging Face `transformers` targets, loaded only from local files (never from a hub)."""
