# The two commands of the README: `make demo` and `make test`. Everything installs from requirements.lock.
SHELL := /bin/bash
comma := ,
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
SIZE ?= M

BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements-bench.lock | sha1sum | cut -c1-12)

TIERS := unit db erasure dag ui quality

.PHONY: compose-env install bench-install demo test $(addprefix test-,$(TIERS)) airflow stop report lock clean bench-ml100k bench-faults bench-topn bench-scale bench-io bench-neumf-cost bench-ui bench-domains bench-domain-cost bench-quality bench-nights bench-scale-out bench-chaos bench-erasure

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.lock
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## make demo: embedded PostgreSQL (or $$DATABASE_URL), schema, synthetic world, one DAG run, a report
demo: $(STAMP)
	$(PY) -m rec_models demo

## make test: the test suite, against a real PostgreSQL (embedded unless $$DATABASE_URL is set), test files on two workers; the ten slowest tests at the end
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=10

## make test-unit | test-db | test-erasure | test-dag | test-ui | test-quality: one tier of the suite (unit: under a minute)
$(addprefix test-,$(TIERS)): test-%: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m $*

## make airflow: api-server, scheduler, dag-processor and triggerer on 127.0.0.1:8080 (EXECUTOR=celery: Redis and two Celery workers too)
EXECUTOR ?= local
airflow: $(STAMP)
	$(PY) -m rec_models airflow --executor $(EXECUTOR)

## make stop: stop what `make airflow` and `make demo` started
stop:
	@if [ -x $(PY) ]; then $(PY) -m rec_models stop; fi

report: $(STAMP)
	$(PY) -m rec_models report

$(BENCH_STAMP): $(STAMP) requirements-bench.lock
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements-bench.lock
	@# LightFM: if it cannot be built here the benchmark prints that in its row instead of a number.
	-$(VENV)/bin/pip install --disable-pip-version-check -q --no-build-isolation --no-use-pep517 lightfm==1.17
	@rm -f $(VENV)/.bench-* && touch $(BENCH_STAMP)

bench-install: $(BENCH_STAMP)

## make bench-ml100k: our models vs implicit and LightFM on MovieLens 100K (DATA=path to ml-100k)
DATA ?= ../shared/data/ml-100k
bench-ml100k: $(BENCH_STAMP)
	$(PY) -m bench.ml100k --data $(DATA)

## make bench-topn: exact top-N by dot product vs faiss IndexFlatIP (SIZES=20000,50000,100000)
SIZES ?= 20000,50000,100000
bench-topn: $(BENCH_STAMP)
	$(PY) -m bench.topn --sizes $(SIZES)

## make bench-scale: the nightly steps on synthetic worlds S / M / L (SIZE=M by default; COMBINE=1 adds saved worlds of this code)
bench-scale: $(STAMP)
	$(PY) -m bench.scale $(foreach s,$(subst $(comma), ,$(SIZE)),--size $(s)) $(if $(COMBINE),--combine)

## make bench-neumf-cost: NeuMF's network on every pair vs re-ranking pretrained-GMF candidates (after bench-scale)
bench-neumf-cost: $(STAMP)
	$(PY) -m bench.neumf_cost --size $(SIZE)

## make bench-io: extract and publish I/O vs ADBC, psycopg2 + pyarrow, psycopg 3, pandas; the swap
bench-io: $(BENCH_STAMP)
	$(PY) -m bench.io

## make bench-domains: domain-only users: our domain model vs domain popularity and ridge anchors chosen on validation (SIZE=S, LEVELS=structured)
LEVELS ?= structured
bench-domains: $(STAMP)
	$(PY) -m bench.domains --size $(if $(filter command line environment,$(origin SIZE)),$(SIZE),S) --levels $(LEVELS)

## make bench-quality: ML-100K A-temporal and the domain worlds' hot, domain-only and changed users, each path vs its best anchor (SIZE=S, DATA)
bench-quality: $(STAMP)
	$(PY) -m bench.quality --data $(DATA) --size $(if $(filter command line environment,$(origin SIZE)),$(SIZE),S)

## make bench-domain-cost: the domain model's fit seconds and peak memory at a size with 20k distinct domains (SIZE=L)
bench-domain-cost: $(STAMP)
	$(PY) -m bench.domain_cost --size $(if $(filter command line environment,$(origin SIZE)),$(SIZE),L)

## make bench-ui: the Recommendations view's pages over HTTP on a world of SIZE (kept for reruns); last line `ui: ...`
bench-ui: $(STAMP)
	$(PY) -m bench.ui --size $(SIZE)

## make bench-faults: bad input, injected faults and readers during publishes; prints one summary line
bench-faults: $(STAMP)
	$(PY) -m bench.faults

## make compose-env: random secrets for docker-compose.yml into a git-ignored .env (an existing .env is kept)
COMPOSE_SECRETS := POSTGRES_PASSWORD AIRFLOW_DB_PASSWORD RECS_DB_PASSWORD RECS_UI_DB_PASSWORD AIRFLOW_JWT_SECRET
compose-env:
	@if [ -f .env ]; then echo ".env exists: kept"; else \
	  $(PYTHON) -c 'import secrets, sys; [print(k + "=" + secrets.token_urlsafe(64 if k.endswith("SECRET") else 24)) for k in sys.argv[1:]]' \
	    $(COMPOSE_SECRETS) > .env && chmod 600 .env && echo "wrote .env: $(COMPOSE_SECRETS)"; fi

## make lock: re-pin every dependency from the current venv (after adding one to pyproject.toml)
lock:
	$(VENV)/bin/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' > requirements.lock

clean: stop
	rm -rf var .pytest_cache

## make bench-scale-out: one night under LocalExecutor + local run folder, then CeleryExecutor (Redis, two workers) + run folder on S3 (SeaweedFS) (SIZE=M)
bench-scale-out: $(STAMP)
	$(PY) -m bench.scale_out --size $(SIZE)

## make bench-nights: an evolving world night by night through the scheduler, train_mode full vs warm (SIZE=S, NIGHTS=14; M: 7+; MODES, FRESH=1, RERUN=0)
bench-nights: $(STAMP)
	$(PY) -m bench.nights --size $(if $(filter command line environment,$(origin SIZE)),$(SIZE),S) $(if $(NIGHTS),--nights $(NIGHTS)) $(if $(MODES),--modes $(MODES)) $(if $(FRESH),--fresh) $(if $(filter 0,$(RERUN)),--no-rerun)

## make bench-chaos: nights under the scheduler with Celery workers and run files on S3 while workers, the scheduler and PostgreSQL are killed (SIZE=S)
bench-chaos: $(STAMP)
	$(PY) -m bench.chaos --size $(if $(filter command line environment,$(origin SIZE)),$(SIZE),S)

## make bench-erasure: PEOPLE (1000) erased during a night under the scheduler, a reader on the _current views, then every place scanned (SIZE=M)
PEOPLE ?= 1000
bench-erasure: $(STAMP)
	$(PY) -m bench.erasure --size $(SIZE) --people $(PEOPLE)
