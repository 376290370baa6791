"""Applications over the runtime: segmenting image files (``predict``), image sets into COCO results
(``segment``), and their file formats (COCO RLE, box files)."""
