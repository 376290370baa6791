"""Runtime backends (torch, onnxruntime, tensorrt + pycuda) behind one ``Predictor``."""
