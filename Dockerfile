# vn3d-retarget on CPU (Mesa llvmpipe through EGL). Assets are not in the image: mount them.
#   docker build -t vn3d .
#   docker run --rm -p 127.0.0.1:8080:8080 -v /path/to/assets:/assets vn3d
#     (then open http://127.0.0.1:8080/ on the host; the container listens on all of its
#      own interfaces, the -p mapping keeps it to the host's loopback)
#   docker run --rm -v /path/to/assets:/assets -v "$PWD/out:/app/out" vn3d vn3d demo --out out/demo.mp4
# On an NVIDIA GPU host, run with `--gpus all` and the NVIDIA container toolkit: EGL then
# finds the NVIDIA driver's vendor library instead of Mesa.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libglib2.0-0 make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY vn3d vn3d
COPY engines engines
COPY server server
COPY trt_build trt_build
COPY avatars avatars
COPY client_web client_web
COPY scripts scripts
RUN pip install --no-cache-dir -e .

ENV VN3D_ASSETS=/assets
# every call starts threads; few malloc arenas keep the RSS flat (server/malloc_arenas.py)
ENV MALLOC_ARENA_MAX=2
EXPOSE 8080
CMD ["vn3d", "serve", "--host", "0.0.0.0", "--port", "8080"]
