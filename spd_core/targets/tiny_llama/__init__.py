"""Tiny Llama targets: a byte-level BPE tokenizer and a Llama decoder trained on the packaged
corpora, checked against a unigram model and exported as a Hugging Face folder."""
