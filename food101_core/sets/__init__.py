"""Your own photos: any labelled set evaluated with a bundle's model (ONNX Runtime, no TensorFlow).

`uploads` reads what a person brings (a folder of class folders, Food-101's images/ + meta/, a CSV of path,label,
or a zip of any of these) and accounts for every file; `..labels` matches their labels to the model's dishes;
`scoring` predicts every photo and measures the set against the test split. `python -m food101_core.sets` is the
command line; the app's "Your photos" tab and `/evaluate_set` use the same functions.
"""
