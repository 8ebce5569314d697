"""Tasks: one Environment subclass per module, with its teacher and pre-training data."""
