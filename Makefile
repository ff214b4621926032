# The two commands of the README:  `make reproduce`  and  `make test`.
# Both create .venv on first use (idempotent), so they work on a fresh clone.
PY    ?= python3
VENV  ?= .venv
BIN    = $(VENV)/bin
OUT   ?= results
SCALE ?= quick

.PHONY: setup reproduce test test-all browser bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]' torch==2.13.0
	touch $@

# Headless Chromium for the report test (Debian package; skipped if already there).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

reproduce: setup
	$(BIN)/rnnlab reproduce --scale $(SCALE) --out $(OUT)

test: setup browser
	$(BIN)/python -m pytest -q

# Paper-scale checks too (slow; not run in CI).
test-all: setup browser
	RNNLAB_SLOW=1 $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/rnnlab bench

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
