"""Running the networks: runtime choice (TensorRT, ONNX Runtime CUDA/CPU; backend.py),
one batch across sessions (batcher.py), ONNX export (onnx_export.py) and the list of the
project's networks (networks.py)."""
