# Every target creates .venv and installs what it needs, so each works as the first
# command on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test unit integration e2e infrastructure lint widget widget-lint bench clean host-vendor

# The host page's libraries (RequireJS, jQuery, underscore, moment, twig.js: what Kommo's page
# gives a widget), from the npm registry into devstack/widget_host/node_modules (git-ignored).
HOST_VENDOR := devstack/widget_host/node_modules/.installed
$(HOST_VENDOR): devstack/widget_host/package.json devstack/widget_host/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "the host page needs npm (Debian: apt-get install npm)" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error --prefix devstack/widget_host
	touch $(HOST_VENDOR)

host-vendor: $(HOST_VENDOR)  ## the Kommo host page's libraries (make run serves the page)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) $(HOST_VENDOR) widget  ## start the local stack, play the worked example once, keep serving
	$(BIN)/python -m devstack run

demo: $(STAMP)  ## play the worked example against a fresh local stack; exit 0 only if every step happened
	$(BIN)/python -m devstack demo

# Browser tests leave a picture of each screen they open here (tests/support/browser.py).
SCREENSHOTS ?= build/screenshots
export MAILER_SCREENSHOTS := $(abspath $(SCREENSHOTS))

test: $(STAMP) lint $(HOST_VENDOR) widget  ## every test: unit, integration, end to end, infrastructure
	sh scripts/ensure-dovecot.sh  # the IMAP tests need Debian's Dovecot; installed when missing
	sh scripts/ensure-spamassassin.sh  # the spam score test needs Debian's SpamAssassin; likewise
	sh scripts/ensure-chromium.sh  # the browser tests need Debian's Chromium; likewise
	$(BIN)/python -m pytest -n 2 --dist loadfile
	@echo "screenshots of the screens the browser tests opened: $(MAILER_SCREENSHOTS)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions devstack scripts
	$(BIN)/lint-imports  # the core's rows and no import circles (pyproject.toml)
	$(BIN)/cfn-lint infra/template.yaml
	sh scripts/widget-lint.sh  # the widget's JavaScript: ESLint and TypeScript's checkJs (npm)

# The Kommo widget's archive: build/widget/widget.zip (and build/widget/files/ unpacked).
# API_URL is the stack's ApiUrl output; the manifest's dp.webhook_url is built from it.
# SUPPORT_LINK (https://) and SUPPORT_EMAIL fill the manifest's widget.support (placeholders without).
widget: $(STAMP)  ## the upload-ready widget.zip (docs/widget.md)
	MAILER_API_URL='$(API_URL)' MAILER_SUPPORT_LINK='$(SUPPORT_LINK)' MAILER_SUPPORT_EMAIL='$(SUPPORT_EMAIL)' \
		$(BIN)/python scripts/build_widget.py

widget-lint:  ## ESLint and tsc --checkJs on widget/script.js (installs widget/node_modules)
	sh scripts/widget-lint.sh

# Each tier alone (make test runs them all, in parallel, after lint).
unit: $(STAMP)  ## pure rules: no AWS, no servers
	$(BIN)/python -m pytest -n 2 tests/unit

integration: $(STAMP)  ## the core against moto, real SMTP and IMAP servers, the Kommo stand-in, Chromium
	sh scripts/ensure-dovecot.sh
	sh scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/integration

e2e: $(STAMP) $(HOST_VENDOR) widget  ## the local stack end to end (make run's stack, the worked example, its spam scores)
	sh scripts/ensure-spamassassin.sh
	sh scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/e2e

infrastructure: $(STAMP)  ## the template, the import contracts, handler imports, the docs' tables
	$(BIN)/python -m pytest -n 2 tests/infrastructure

bench: $(STAMP)  ## print the performance figures (not tests)
	$(BIN)/python bench/cold_import.py
	$(BIN)/python bench/send_throughput.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/audience.py
	$(BIN)/python bench/attachment_memory.py --skip-in-memory
	$(BIN)/python bench/track.py
	$(BIN)/python bench/hook_burst.py
	$(BIN)/python bench/campaign.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
