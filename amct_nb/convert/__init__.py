"""Convert a model quantized elsewhere (QDQ from PyTorch, TensorFlow, ONNX Runtime, NNCF) into a record."""
