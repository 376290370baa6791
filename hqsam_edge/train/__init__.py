"""Training of HQ-SAM's HQ parts on HQSeg-44K: losses and the trainer (one process or torchrun + DDP).

Entry point: ``hqsam_edge.train.trainer.train(TrainSpec(...))``, or
``hqsam-edge train`` on the command line.
"""
