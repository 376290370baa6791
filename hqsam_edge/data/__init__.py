"""Image and prompt transforms; HQSeg-44K data sets; prompt sampling."""
