"""TensorRT engine builds from the project's ONNX files: lands with the encoder issue.

TensorRT stays an optional import; without CUDA the runtime uses ONNX Runtime on the CPU.
"""
