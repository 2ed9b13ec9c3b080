# Two commands on a fresh Debian/Ubuntu machine (see README.md):
#   make run    set up everything, then start the live service (prints the URL)
#   make test   set up everything (with a browser for the page test), then run the tests
#   make viewer three.js for client_web/viewer/ (the GLB viewer page; the tests render with it)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the cluster extra (Ray) for the tests of cluster mode; `make run` does not need it
CLUSTER_STAMP := $(VENV)/.cluster-installed
APT_PACKAGES := libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libglib2.0-0
# the WebRTC/browser tests: a browser and its driver, `ip` and `unshare` for a private netns;
# Janus (the SFU of cluster mode's rooms; its own service is not started, the tests run one)
TEST_APT_PACKAGES := chromium chromium-driver iproute2 util-linux janus
# the three.js GLB viewer page (client_web/viewer/): its node_modules, from the lock file
VIEWER := client_web/viewer
VIEWER_STAMP := $(VIEWER)/node_modules/.package-lock.json
# WebRTC tests run where only loopback exists (root: plain unshare; else a user namespace)
NETNS := unshare --net $(if $(filter 0,$(shell id -u)),,--map-root-user)

.PHONY: setup system test-system viewer apt run demo test lint bench clean gpu

setup: system $(STAMP)

# Debian packages for headless OpenGL (Mesa EGL) and OpenCV's libGL/glib; skipped when present.
system:
	@$(MAKE) --no-print-directory apt PACKAGES="$(APT_PACKAGES)"

test-system:
	@$(MAKE) --no-print-directory apt PACKAGES="$(TEST_APT_PACKAGES)"
	@$(MAKE) --no-print-directory viewer

# three.js (pinned in package-lock.json) for the viewer page; npm from Debian when missing.
# Nothing happens while node_modules is newer than the lock file.
viewer: $(VIEWER_STAMP)

$(VIEWER_STAMP): $(VIEWER)/package.json $(VIEWER)/package-lock.json
	@command -v npm >/dev/null 2>&1 || $(MAKE) --no-print-directory apt PACKAGES="nodejs npm"
	cd $(VIEWER) && npm ci --no-audit --no-fund
	touch $@

apt:
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# a GPU machine: ONNX Runtime's CUDA provider over the CPU wheel (same module), TensorRT
# where its wheels install; then vn3d doctor says what is usable. scripts/gpu_check.sh next.
gpu: setup
	$(PY) -m pip install -q -e ".[gpu]"
	$(PY) -m pip install -q --force-reinstall --no-deps "onnxruntime-gpu>=1.18"
	$(PY) -m pip install -q --extra-index-url https://pypi.nvidia.com -e ".[tensorrt]" \
	  || echo "TensorRT did not install: the CUDA and CPU providers only"
	$(VENV)/bin/vn3d doctor || true

run: setup
	$(VENV)/bin/vn3d doctor || true
	$(VENV)/bin/vn3d dataset sample  # the sample gallery (once; later runs skip built subjects)
	$(VENV)/bin/vn3d avatar styles --pictures  # the hair picker's pictures (once)
	MALLOC_ARENA_MAX=2 $(VENV)/bin/vn3d serve  # see server/malloc_arenas.py

demo: setup
	$(VENV)/bin/vn3d demo --out out/demo.mp4

$(CLUSTER_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[dev,cluster]"
	touch $(CLUSTER_STAMP)

test: setup test-system $(CLUSTER_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -m "not netns" --durations=15
	$(NETNS) sh -c 'ip link set lo up && $(VENV)/bin/pytest -q -m netns --durations=15'

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) scripts/bench_render.py

clean:
	rm -rf out .pytest_cache .ruff_cache
