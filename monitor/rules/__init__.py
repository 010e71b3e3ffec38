"""The watch-rule language and the classifier that evaluates it."""
