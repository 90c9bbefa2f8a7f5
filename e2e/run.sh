#!/usr/bin/env bash
# Browser tests: installs Chromium and the npm packages if missing, type-checks the web
# client, then runs every e2e/*.test.mjs against the veche binary ($VECHE_BIN, default
# target/debug/veche — build it first with `cargo build -p veche-server`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
fi
if [ ! -d e2e/node_modules/playwright-core ] || [ ! -d e2e/node_modules/typescript ] || [ ! -d e2e/node_modules/oidc-provider ]; then
  npm ci --prefix e2e --no-audit --no-fund
fi

npm --prefix e2e run --silent typecheck
echo "web client type check: ok"
node --test --test-concurrency=1 e2e/
