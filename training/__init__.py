"""Reproduce the shipped burned-in text classifier (see training/README.md)."""
