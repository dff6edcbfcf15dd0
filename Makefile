# hyperscaler: make setup | make plan STACK=dev | make test
SHELL := /bin/bash
STACK ?= dev
OUT ?= out/$(STACK)
VENV := .venv
PY := $(VENV)/bin/python
APT_SETUP := python3 python3-venv python3-pip
APT_ALL := $(shell sed -e 's/\#.*//' packages.apt)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

ENGINE_CACHE ?= /var/cache/hyperscaler-engine
.PHONY: setup deps plan validate test lint unit integration golden bench clean docs engine e2e vm images

# The virtual environment with pinned dependencies; rebuilt when the pins change.
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_SETUP); }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Debian packages for the real-software tests (SLURM, libvirt, cloud-init, shellcheck...).
deps: .deps.stamp
.deps.stamp: packages.apt
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_ALL)
	touch $@

validate: setup
	$(PY) -m hyperscaler validate $(STACK)

# The main job: an offline plan of a stack, no hypervisor and no Pulumi CLI needed.
plan: setup
	$(PY) -m hyperscaler plan $(STACK) --out $(OUT)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

unit: setup
	$(PY) -m pytest -q -m "not integration and not e2e and not vm"

integration: setup deps engine
	HYPERSCALER_ENGINE_CACHE=$(ENGINE_CACHE) $(PY) -m pytest -q -m integration

# The real Pulumi CLI with our language host, the provider doubles (e2e/doubles) and the echoing stubs,
# built from Go modules into $(ENGINE_CACHE): about 6 minutes cold on 2 cores, 0.1 s warm (docs/testing.md).
# An older Go (Debian's golang-go) fetches the Go that e2e/go.mod asks for from the module proxy.
engine: setup
	@command -v go >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; }
	HYPERSCALER_ENGINE_CACHE=$(ENGINE_CACHE) $(PY) e2e/build_engine.py build >/dev/null

e2e: engine
	HYPERSCALER_ENGINE_CACHE=$(ENGINE_CACHE) $(PY) -m pytest -q -m e2e tests/e2e

# `pulumi up` of the program's own VMs under TCG on a namespaced libvirtd, through the provider doubles,
# then a SLURM change, a replacement and a destroy: about 12 minutes warm on 2 cores, plus the first time the
# offline base and the Packer build of the compute image it boots (docs/testing.md, "Base images").
vm: setup deps engine
	HYPERSCALER_ENGINE_CACHE=$(ENGINE_CACHE) $(PY) -m pytest -q -m vm tests/vm

# Everything: lint, unit, component, integration (real SLURM, libvirt, cloud-init, shellcheck; needs root
# for namespaces), the real Pulumi engine tests and the VM tier.
test: setup deps lint engine
	HYPERSCALER_ENGINE_CACHE=$(ENGINE_CACHE) $(PY) -m pytest -q

# Role images built with Packer, and OUT/manifest.json for a stack's `images:` (docs/images.md). With
# BASE=<path, https:// URL or s3://bucket/key> and BASE_SHA256=<hex>, on your pinned base (a Debian cloud
# image); without BASE, on the offline debootstrap base the tests use (booted with direct kernel boot).
# ACCEL=kvm on a workstation; TCG works everywhere, slower (2-4.5 minutes per role on 2 cores, docs/images.md).
IMAGES_OUT ?= /var/lib/hyperscaler/images
ACCEL ?= tcg
ROLES ?= compute controller storage
images: setup deps
ifeq ($(BASE),)
	$(PY) -m tests.vm.image images $(IMAGES_OUT) $(ACCEL) $(ROLES)
else
	$(PY) -m hyperscaler image build --base '$(BASE)' --base-sha256 '$(BASE_SHA256)' --out $(IMAGES_OUT) \
		--accelerator $(ACCEL) $(addprefix --role ,$(ROLES))
endif

golden: setup
	$(PY) -m pytest -q tests/unit/test_renderers.py --update-golden
	git diff --stat tests/golden

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf out $(VENV) .deps.stamp .pytest_cache .mypy_cache .ruff_cache

docs: setup
	$(PY) -m hyperscaler.docgen
