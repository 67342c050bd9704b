"""The induction target: an attention-only transformer trained on sequences with a repeated span,
checked for a previous-token head and an induction head."""
