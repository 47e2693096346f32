"""Quantization-aware training (the ``torch`` extra): an ONNX model as a trainable torch module whose
forward pass is the deploy model's arithmetic, trained from the PTQ result and written back through
the same record -> plan -> export path as every other job."""
