"""TensorRT engines from the project's ONNX files (``vn3d engines build``).

``availability.py``: whether TensorRT and a CUDA device are there;
``build.py``: the build (FP16/FP32, one optimisation profile for batch 1..64, a timing
cache) and ``TrtRunner``; ``engine_cache.py``: engines cached under a key of (ONNX sha256,
TensorRT version, GPU name, precision, max batch). TensorRT stays an optional import:
without it or without CUDA, ``engines.inference.backend`` picks ONNX Runtime by itself.
"""
