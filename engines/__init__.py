"""The engines: everything between a camera frame and a rendered head, one sub-package per
concern (see docs/ARCHITECTURE.md, "Where to change what"):

face/        face models (ICT-FaceKit, FLAME) as pure tensor functions, expression presets,
             the MediaPipe-to-ICT landmark correspondence, FLAME's landmarks, UVs and
             albedo, the ARKit -> FLAME map (FLAME driven by ICT's parameters)
geometry/    rigid alignment, closest points on a mesh, normals, triangulation
render/      the offscreen renderer (ModernGL, EGL), cameras, materials, hair drawing, skin
flame_encoders/  photo -> FLAME with the registered checkpoints: DECA, MICA
tracking/    camera frames, the MediaPipe tracker, ARKit mapping, filters, MediaPipe on ONNX
encoder/     the own landmark encoder: network, synthetic data, training, tracker reader
emotion/     FACS records, the ERM, the emotion detector and label, the sliders API
inference/   runtime choice (TensorRT / ONNX Runtime), batching across sessions, ONNX export
retarget/    Target, the per-frame Retargeter and its modes, overlapped form, clips, demo
evaluation/  image and mesh measurements, dataset evaluation, plots
dataset/     VN3DFace-style datasets: input photos, building, loading
files/       assets, the registered files (FLAME, DECA, MICA), the disk cache, the video
             writer, OBJ meshes
"""
