"""The serving side: a bundle's exported models answering photos with numpy, Pillow and ONNX Runtime.

Never imports TensorFlow or Keras (tests/test_layout.py checks it): a Space installs only requirements.txt.
"""
