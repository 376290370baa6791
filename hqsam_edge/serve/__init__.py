"""Serving the exported graphs behind an inference server.

``triton`` writes a Triton Inference Server model repository from an artifact
folder; ``triton_model`` is the Python-backend model in it (image + prompts in
original pixels -> masks at the original size), whose core logic runs here too;
``triton_graph`` the graph models of the ``python`` runtime; ``shm`` the /dev/shm
a repository needs; ``server`` a real Triton server started on this machine.
"""
