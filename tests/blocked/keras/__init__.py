"""Stands in for keras in tests that prove the app never needs it: importing it fails."""

raise ImportError("keras is blocked in this test: the serving side and the app must not import it")
