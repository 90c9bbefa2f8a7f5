#!/usr/bin/env bash
# Runs every test Veche has. Installs what a fresh Debian machine lacks (Chromium for the
# browser tests, the npm packages of e2e/), so this one command works on a clean checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it started, so a slow CI run shows where its time went.
step() { echo "==> $* (at ${SECONDS} s)"; }
trap 'rc=$?; [ -n "${build_pid:-}" ] && { pkill -P "$build_pid"; kill "$build_pid"; } 2>/dev/null; echo "==> done after ${SECONDS} s (exit $rc)"' EXIT

# Compiling is most of a clean run and needs none of the packages installed below, whose
# download and unpacking wait mostly on the network and the disk: it starts first and runs
# beside them. Lints first, then the test binaries (`cargo test` below only runs them).
mkdir -p target
build_log=target/test-build.log
step "lints and test build, in the background (log: $build_log)"
(cargo clippy --workspace --all-targets --locked -- -D warnings \
  && cargo test --workspace --locked --no-run) >"$build_log" 2>&1 &
build_pid=$!

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# Browser tests on shaped or firewalled links run in network namespaces (e2e/lib/netns.mjs).
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
# The browser suite has a Firefox ESR participant (puppeteer-core), on an Xvfb display so that
# it can share a screen.
command -v firefox-esr >/dev/null 2>&1 || need_apt+=(firefox-esr)
command -v Xvfb >/dev/null 2>&1 || need_apt+=(xvfb)
# TURN through an external coturn (e2e/turn-coturn.test.mjs).
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
# The storage tests start a throwaway PostgreSQL server (crates/veche-server/tests/support).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# The directory sign-in tests start a throwaway OpenLDAP server (tests/support/slapd.rs).
[ -x /usr/sbin/slapd ] || need_apt+=(slapd ldap-utils)
# The calendar tests parse invitations with Python's icalendar and send them to aiosmtpd
# (crates/veche-server/tests/calendar.rs).
{ command -v python3 && python3 -m pip --version; } >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
# The package test (scripts/test-package.sh): cargo-deb reads shared-library dependencies
# with dpkg-shlibdeps, systemd-analyze verifies the unit (systemd need not run), curl asks
# the installed server.
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_apt+=(dpkg-dev)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  # slapd's package would ask for a domain and an admin password and set up a system
  # directory; the tests make their own, so it is told to configure nothing.
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

step "Python icalendar and aiosmtpd (the calendar tests' iCalendar parser and SMTP server)"
python3 -c 'import icalendar, aiosmtpd' 2>/dev/null \
  || python3 -m pip install --quiet --break-system-packages icalendar aiosmtpd 2>/dev/null \
  || python3 -m pip install --quiet icalendar aiosmtpd

step "npm packages (e2e/)"
(cd e2e && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; else npm install --no-audit --no-fund --silent; fi)

step "format"
cargo fmt --all -- --check

step "web client type check"
npm --prefix e2e run --silent typecheck

step "waiting for the lints and the test build"
if ! wait "$build_pid"; then
  build_pid=
  cat "$build_log"
  echo "lints or test build failed (above)" >&2
  exit 1
fi
build_pid=
tail -n 3 "$build_log"

step "Rust tests (unit, sans-IO scenarios, real-socket integration)"
cargo test --workspace --locked

# `cargo test` built the binaries the browser tests start (veche for the server's tests,
# veche-tap and veche-load for their own), with the features the tests unify; a separate
# `cargo build` would build half the dependencies again without them.
for bin in veche veche-tap; do
  [ -x "target/debug/$bin" ] || { echo "target/debug/$bin was not built by cargo test" >&2; exit 1; }
done

step "Debian package: build, install, run as the unit does, purge (scripts/test-package.sh)"
./scripts/test-package.sh

step "browser tests (headless Chromium and Firefox ESR against the real server)"
export VECHE_BIN="$PWD/target/debug/veche"
node --test --test-concurrency=1 e2e/
