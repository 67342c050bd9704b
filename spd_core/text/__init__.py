"""Text for language-model targets: cached corpora, token windows, and text/token helpers."""
