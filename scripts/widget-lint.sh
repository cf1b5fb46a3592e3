#!/bin/sh
# ESLint and TypeScript (checkJs) on the widget's own JavaScript (docs/widget.md).
# Installs the exact versions of widget/package-lock.json into widget/node_modules when they
# are missing or older than the lock file; needs node and npm (Debian: apt-get install npm).
set -eu
cd "$(dirname "$0")/../widget"
if ! command -v npm >/dev/null 2>&1; then
    echo "widget lint needs npm (node and npm from Debian's packages: apt-get install npm)" >&2
    exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
npx --no-install eslint --max-warnings=0 .
npx --no-install tsc -p tsconfig.json
