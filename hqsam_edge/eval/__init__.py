"""Metrics (mask IoU, boundary IoU) and the evaluation runner."""
