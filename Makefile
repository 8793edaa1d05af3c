# zooindex: set-up, tests, benchmarks, and the paper's zoo.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
DEMO_INDEX ?= $(VENV)/demo-index.db

.PHONY: install dev demo test test-fast wheel-check bench zoo reproduce evidence clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)  ## zooindex with onnxruntime (onnxruntime-gpu when nvidia-smi sees a GPU) and the web page
	$(PY) -m pip install -q -e ".[$(RUNTIME),images,plots,hub,web]"

dev: install  ## + test tools, Ray, torch and torchvision for the zoo recipes, transformers and timm for checkpoint exports
	$(PY) -m pip install -q -e ".[$(RUNTIME),images,plots,hub,web,ray,test,timm,text]" torch==2.14.1 torchvision==0.29.1

demo: install  ## the main job on a real example: rank the demo zoo for a Fashion-MNIST target
	rm -rf $(DEMO_INDEX) $(DEMO_INDEX)-wal $(DEMO_INDEX)-shm $(DEMO_INDEX)-activations
	$(VENV)/bin/zooindex add --index $(DEMO_INDEX) models/demo/
	$(VENV)/bin/zooindex search --index $(DEMO_INDEX) models/demo/fashion-0-4-target.npz

test: dev  ## the whole test suite
	$(PY) -m pytest -q

test-fast: dev  ## the suite without crash, concurrency and subprocess tests (marked slow)
	$(PY) -m pytest -q -m "not slow"

wheel-check:  ## the built wheel, installed in a fresh environment (not editable), ranks the demo zoo
	rm -rf build dist .venv-wheel
	$(PYTHON) -m venv .venv-wheel
	.venv-wheel/bin/python -m pip install -q --upgrade pip
	.venv-wheel/bin/python -m pip wheel -q --no-deps -w dist .
	.venv-wheel/bin/python -m pip install -q "$$(ls dist/zooindex-*.whl)[cpu]"
	cd /tmp && $(CURDIR)/.venv-wheel/bin/zooindex --version
	cd /tmp && $(CURDIR)/.venv-wheel/bin/zooindex add --index $(CURDIR)/.venv-wheel/demo.db $(CURDIR)/models/demo/
	cd /tmp && $(CURDIR)/.venv-wheel/bin/zooindex search --index $(CURDIR)/.venv-wheel/demo.db $(CURDIR)/models/demo/fashion-0-4-target.npz --top 2

bench: dev  ## benchmarks; numbers go to benchmarks/RESULTS.md
	$(PY) benchmarks/bench_silhouette.py
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_search.py --scorer silhouette
	$(PY) benchmarks/bench_big_target.py
	$(PY) benchmarks/bench_adapt.py
	$(PY) benchmarks/bench_realistic.py  # needs torch and torchvision; says so otherwise
	$(PY) benchmarks/bench_ray.py

zoo: dev  ## train the paper's 23 models and Table 1's nine from two more seeds into models/zoo/ (resumable; GPU when torch sees one)
	$(PY) -m models.build_zoo --set paper seeds --readme models/README.md

reproduce: zoo  ## the paper's tables and figures into models/RESULTS.md
	$(PY) -m models.reproduce

evidence: zoo  ## the scorers' evidence base (56 models x 8 targets; fine-tuning 12 x 4) into benchmarks/ESTIMATORS.md (resumable)
	$(PY) benchmarks/bench_evidence.py --zoo models/zoo

clean:
	rm -rf $(VENV) .venv-wheel build dist *.egg-info .pytest_cache
