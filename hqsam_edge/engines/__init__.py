"""TensorRT engine building: profiles from the graph contract, timing cache, DLA, trtexec lines.

``tensorrt`` is imported inside the functions that need it only.
"""
