"""Turning a page into text and the text into tokens, lemmas and sentences, per language."""
