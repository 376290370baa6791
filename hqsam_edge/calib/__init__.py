"""Calibration image sets, activation ranges, and the FP16 / INT8 (Q/DQ) graph recipes.

Knows nothing about TensorRT: calibration data is an iterable of
``{input_name: np.ndarray}``, ranges are plain numbers kept apart from the
graph recipes, so one calibration serves the TensorRT (symmetric int8) and the
ONNX Runtime (U8S8) graph backends.
"""
