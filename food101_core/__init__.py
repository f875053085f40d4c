"""Food-101 Explorer: two-stage fine-tuning, evaluation, run bundles and a Gradio app.

Heavy libraries (TensorFlow, Keras, Gradio) are imported inside the modules that need them,
so that `import food101_core` stays cheap for the app's start-up and for the CLI's `--help`.
"""

__version__ = "0.1.0"
