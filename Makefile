# inspectord: the two commands of the quick start, and a few more.
PY := .venv/bin/python

.PHONY: demo demo-stop test unit integration sample-config docs bench clean

.venv/.bootstrapped: setup.py tools/bootstrap
	tools/bootstrap

## Start a real Ironic and inspectord and introspect three nodes.
demo: .venv/.bootstrapped
	$(PY) -m devenv.demo start

demo-stop: .venv/.bootstrapped
	$(PY) -m devenv.demo stop

## Every test: unit and integration (real Ironic, IPA, Keystone, databases...),
## in TEST_JOBS worker processes (each test class runs in one of them).
TEST_JOBS ?= 3
test: .venv/.bootstrapped
	tools/run-tests $(PY) --jobs=$(TEST_JOBS) tests

unit: .venv/.bootstrapped
	tools/run-tests $(PY) tests.unit

integration: .venv/.bootstrapped
	tools/run-tests $(PY) tests.integration

## Boot-storm benchmark vs ironic-inspector 12.5.0 and the floor, PXE filter (as root), growth
## against a fast fake Ironic at 1,000 nodes and the idle footprint; results in bench/results/.
## Quick by default; e.g. make bench BENCH_ARGS="--nodes 100,1000 --runs 3 --scale-args '--runs 3'";
## BENCH_SCALE=10000: the growth at 1,000 and 10,000 nodes (0: skipped).
BENCH_ARGS ?=
BENCH_SCALE ?= 1000
bench: .venv/.bootstrapped
	bench/setup
	$(PY) -m bench.run --scale $(BENCH_SCALE) $(BENCH_ARGS)
	$(PY) -m bench.footprint

## The documentation (doc/source, Sphinx) as HTML in doc/build/html.
docs: .venv/.bootstrapped
	$(PY) -m sphinx -W -b html doc/source doc/build/html

## Regenerate etc/inspectord/inspectord.conf.sample from the option definitions.
sample-config: .venv/.bootstrapped
	$(PY) -m inspectord.config > etc/inspectord/inspectord.conf.sample

clean:
	rm -rf .venv .demo _trial_temp* build *.egg-info doc/build doc/source/_generated
