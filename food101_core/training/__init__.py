"""The training side: data, model, the two-stage fit, several machines, evaluation and ONNX export.

Imports TensorFlow and Keras (inside the functions that need them); installs with requirements-train.txt. Writes
bundles through `food101_core.bundle` and never imports the serving side or the app.
"""
