"""The deployment steps as the command line runs them: a verified export, and a build of precision variants
(graphs for ONNX Runtime, engines for TensorRT), each checked against the fp32 PyTorch model.

Above ``export``, ``runtime``, ``calib`` and ``engines``, which it composes: every graph is checked by
running it through a runtime ``Backend`` (``runtime.compare``).
"""
