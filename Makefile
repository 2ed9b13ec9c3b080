# Two commands on a fresh Debian/Ubuntu machine (see README.md):
#   make run    set up everything, then render the demo on the embedded default head
#   make test   set up everything, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libglib2.0-0

.PHONY: setup system run test lint bench clean

setup: system $(STAMP)

# Debian packages for headless OpenGL (Mesa EGL) and OpenCV's libGL/glib; skipped when present.
system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
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

run: setup
	$(VENV)/bin/vn3d doctor || true
	$(VENV)/bin/vn3d demo --out out/demo.mp4

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) scripts/bench_render.py

clean:
	rm -rf out .pytest_cache .ruff_cache
