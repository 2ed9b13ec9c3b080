"""Reading a face from video: frames in any format, the MediaPipe tracker (ψ and head
rotation per frame, calibration, One-Euro filtering), the blendshape mapping, and
MediaPipe's three networks under ONNX Runtime."""
