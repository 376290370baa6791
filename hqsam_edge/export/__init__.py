"""ONNX export of the encoder and decoder graphs, graph clean-up, parity checks."""
