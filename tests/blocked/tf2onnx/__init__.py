"""Stands in for tf2onnx in tests that prove the app never needs it: importing it fails."""

raise ImportError("tf2onnx is blocked in this test: the serving side and the app must not import it")
