"""Helpers the tests share: servers they start, fakes they use."""
