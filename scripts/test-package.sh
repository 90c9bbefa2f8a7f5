#!/usr/bin/env bash
# The Debian package, tested for real: builds it with `cargo deb` from the binary `cargo test`
# already built, checks what it holds, installs it on this machine, runs the installed server
# the way its systemd unit does (as the unit's user, in its working directory, with the
# installed /etc/veche/veche.toml), then removes and purges it and checks what each leaves,
# as docs/deploy.md says.
#
# It installs and purges a system package and a system user, so it needs root (or sudo) and a
# machine that does not run Veche from the package: CI's throwaway VM, a container, a spare
# machine. It refuses to run where the `veche` package is already installed.
#
# systemd need not run (CI has none as PID 1): the maintainer scripts must cope without it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cargo-deb this script was written against; installed (into ~/.cargo/bin) when there is
# none. It warns that the dev profile is meant for releases: packaging the debug binary
# avoids a second full build of every dependency with the release profile.
CARGO_DEB_VERSION=3.8.0
target_dir="${CARGO_TARGET_DIR:-target}"
work="$target_dir/package-test"
bin="$target_dir/debug/veche"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
say() { echo "  -- $*"; }
fail() { echo "package test: $*" >&2; exit 1; }

[ -x "$bin" ] || fail "$bin is missing: run \`cargo test --workspace --no-run\` first"
# dpkg's state of the veche package: not-installed, installed, config-files (removed, not
# purged), ...
pkg_status() { dpkg-query -W -f='${db:Status-Status}' veche 2>/dev/null || echo not-installed; }
if [ "$(pkg_status)" != not-installed ]; then
  fail "the veche package is installed on this machine; this test installs and purges it, so it runs only where it is not"
fi
if getent passwd veche >/dev/null || [ -e /var/lib/veche ] || [ -e /etc/veche ]; then
  fail "a veche user, /var/lib/veche or /etc/veche exists without the package; this test needs a machine without them"
fi

if ! command -v cargo-deb >/dev/null 2>&1; then
  say "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet --version "$CARGO_DEB_VERSION" cargo-deb
fi

server_pid=""
made_etc_file=""
cleanup() {
  local rc=$?
  # The server first: deluser (purge) refuses a user that still has a process.
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$(pkg_status)" != not-installed ]; then
    echo "package test: purging the veche package it installed" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get purge -y -qq veche >/dev/null 2>&1 || true
  fi
  # What the test put under /etc/veche itself, so that the next run finds a clean machine.
  if [ -n "$made_etc_file" ]; then
    $SUDO rm -rf /etc/veche/tls
    $SUDO rmdir /etc/veche 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -s "$work/server.log" ]; then
    echo "package test: the installed server's log:" >&2
    tail -n 30 "$work/server.log" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT

rm -rf "$work"
mkdir -p "$work"

# ---- build ----
say "cargo deb (no build: the debug binary of cargo test)"
start=$SECONDS
cargo deb -p veche-server --no-build --profile dev --fast --quiet -o "$work/" >"$work/cargo-deb.log" 2>&1 \
  || { cat "$work/cargo-deb.log" >&2; fail "cargo deb failed"; }
debs=("$work"/veche_*.deb)
if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then fail "expected one veche_*.deb in $work, found: ${debs[*]}"; fi
deb="${debs[0]}"
say "built $(basename "$deb") ($(du -h "$deb" | cut -f1)) in $((SECONDS - start)) s"

# ---- contents ----
dpkg-deb -c "$deb" >"$work/contents"
dpkg-deb -I "$deb" >"$work/info"
# A line of `dpkg-deb -c`: mode, owner/group (cargo-deb writes them as numbers), size, date,
# time, path.
entry() { awk -v p="./$1" '$6 == p { sub(/^0\/0$/, "root/root", $2); print $1, $2 }' "$work/contents"; }
expect_entry() {
  local got
  got="$(entry "$1")"
  [ "$got" = "$2" ] || fail "the package has ${1}: '${got:-nothing}', expected '$2'"
}
expect_entry usr/bin/veche "-rwxr-xr-x root/root"
expect_entry etc/veche/veche.toml "-rw-r----- root/root"
expect_entry usr/share/doc/veche/README.md "-rw-r--r-- root/root"
expect_entry usr/share/doc/veche/deploy.md "-rw-r--r-- root/root"
unit_path="$(awk '$6 ~ /\/systemd\/system\/veche\.service$/ { print substr($6, 2) }' "$work/contents")"
[ -n "$unit_path" ] || fail "the package has no systemd unit veche.service"
expect_entry "${unit_path#/}" "-rw-r--r-- root/root"
grep -q "^ Package: veche$" "$work/info" || fail "the package is not named veche"
depends="$(sed -n 's/^ Depends: //p' "$work/info")"
for dep in adduser libc6; do
  grep -Eq "(^|, )$dep( |,|\$)" <<<"$depends" || fail "Depends ($depends) lacks $dep"
done
dpkg-deb -e "$deb" "$work/control"
for script in postinst prerm postrm; do
  [ -x "$work/control/$script" ] || fail "the package has no executable $script"
done
grep -qx "/etc/veche/veche.toml" "$work/control/conffiles" || fail "/etc/veche/veche.toml is not a conffile"
# The maintainer scripts are ours with cargo-deb's systemd snippets in place of #DEBHELPER#.
grep -q "adduser --system" "$work/control/postinst" || fail "postinst does not create the veche user"
grep -q "deb-systemd-helper" "$work/control/postinst" || fail "postinst does not enable the unit"
if grep -q "#DEBHELPER#" "$work/control/postinst" "$work/control/postrm"; then
  fail "a maintainer script still has #DEBHELPER#"
fi
# What the package ships is what the repository has.
dpkg-deb -x "$deb" "$work/root"
cmp -s "$work/root$unit_path" packaging/veche.service || fail "the packaged unit differs from packaging/veche.service"
cmp -s "$work/root/etc/veche/veche.toml" packaging/veche.toml || fail "the packaged config differs from packaging/veche.toml"
say "contents: /usr/bin/veche, $unit_path, /etc/veche/veche.toml (conffile), docs, maintainer scripts"

# ---- install ----
say "apt-get install $deb"
# apt-get wants a path with a slash to take it as a file rather than a package name.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$(realpath "$deb")" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; fail "installing the package failed"; }
# owner:group mode of a path.
stat_of() { $SUDO stat -c '%U:%G %a' "$1" 2>/dev/null || echo missing; }
expect_stat() {
  local got
  got="$(stat_of "$1")"
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
}
passwd_line="$(getent passwd veche)" || fail "no veche user after install"
IFS=: read -r _ _ uid gid _ home shell <<<"$passwd_line"
[ "$uid" -lt 1000 ] || fail "veche is uid $uid, not a system user"
[ "$home" = /var/lib/veche ] || fail "veche's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "veche's shell is $shell"
[ "$(getent group veche | cut -d: -f3)" = "$gid" ] || fail "veche's primary group is not veche"
expect_stat /usr/bin/veche "root:root 755"
expect_stat /etc/veche/veche.toml "root:veche 640"
expect_stat /var/lib/veche "veche:veche 750"
expect_stat "$unit_path" "root:root 644"
# Enabled (docs/deploy.md: "enabled, not started"), without systemd running.
[ -L /etc/systemd/system/multi-user.target.wants/veche.service ] \
  || fail "the unit is not enabled (no multi-user.target.wants/veche.service)"
say "installed: user veche (uid $uid), /etc/veche/veche.toml root:veche 640, /var/lib/veche veche:veche 750, unit enabled"

# ---- the unit ----
unit_key() { sed -n "s/^$1=//p" "$unit_path" | tail -n 1; }
if command -v systemd-analyze >/dev/null 2>&1; then
  # `verify` loads the unit as systemd would and checks that ExecStart's binary exists. It
  # exits 0 on an unknown key or a value it cannot parse (it ignores them, as systemd
  # would), but it says so: any line about the unit is a failure.
  systemd-analyze verify "$unit_path" >"$work/verify.log" 2>&1 || verify_rc=$?
  if [ "${verify_rc:-0}" -ne 0 ] || grep -q "veche" "$work/verify.log"; then
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify finds fault with the installed unit"
  fi
  say "systemd-analyze verify: clean"
else
  # scripts/test.sh installs it; a run without it would pass unverified.
  fail "no systemd-analyze to verify the unit with (Debian package systemd; scripts/test.sh installs it)"
fi
user="$(unit_key User)"
group="$(unit_key Group)"
workdir="$(unit_key WorkingDirectory)"
exec_start="$(unit_key ExecStart)"
[ "$user:$group" = veche:veche ] || fail "the unit runs as $user:$group, not veche:veche"
[ "$(unit_key StateDirectory)" = veche ] || fail "the unit's StateDirectory is not veche"
[ "$workdir" = /var/lib/veche ] || fail "the unit's WorkingDirectory is $workdir"
[[ "$exec_start" == "/usr/bin/veche serve --config /etc/veche/veche.toml" ]] \
  || fail "unexpected ExecStart: $exec_start"
read -r -a exec_argv <<<"$exec_start"

# ---- run it as the unit does ----
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
say "starting \`$exec_start\` as $user:$group in $workdir (on 127.0.0.1:$port)"
# The file is used as installed. Its `http` (127.0.0.1:8080) and media port (7882) are moved
# through the environment, as an operator's `systemctl edit veche` would, so that the test
# does not depend on those ports being free; the environment beats the file.
as_veche=(setpriv --reuid="$user" --regid="$group" --init-groups --)
[ -z "$SUDO" ] || as_veche=("$SUDO" "${as_veche[@]}")
(cd "$workdir" && exec env -i PATH=/usr/bin:/bin RUST_LOG=info \
  VECHE_HTTP="127.0.0.1:$port" VECHE_MEDIA_PORT=0 "${as_veche[@]}" "${exec_argv[@]}") \
  >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || fail "the installed server exited at start"
  sleep 0.1
done
[ "$(curl -fsS "$base/healthz")" = ok ] || fail "/healthz does not answer ok"
curl -fsS "$base/" | grep -qi "<!doctype html>" || fail "the home page is not HTML"
# The process runs as veche, not root (under sudo it is sudo's child).
veche_pid="$server_pid"
[ -z "$SUDO" ] || veche_pid="$(pgrep -P "$server_pid" | head -n 1)"
[ "$(ps -o user=,comm= -p "$veche_pid" | tr -s ' ')" = "veche veche" ] \
  || fail "the server does not run as the veche user: $(ps -o user=,comm= -p "$veche_pid")"
# An account made through the site lands in the database the config names
# (data-dir = /var/lib/veche: sqlite:///var/lib/veche/veche.db).
curl -fsS -o /dev/null -H 'content-type: application/json' \
  -d '{"email":"operator@example.org","password":"package-test-password","name":"Operator"}' \
  "$base/api/v1/auth/signup" || fail "signing up on the installed server failed"
[ "$($SUDO stat -c %U:%G /var/lib/veche/veche.db)" = veche:veche ] \
  || fail "/var/lib/veche/veche.db is missing or not veche's"
say "answers /healthz and /, signed up an account, database /var/lib/veche/veche.db"
# Stopped as systemd stops it (KillSignal=SIGTERM), within TimeoutStopSec.
stop_timeout="$(unit_key TimeoutStopSec)"
kill -TERM "$server_pid"
for _ in $(seq $((stop_timeout * 10))); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then fail "the server did not stop within ${stop_timeout} s of SIGTERM"; fi
wait "$server_pid" || fail "the server exited with status $? after SIGTERM"
server_pid=""
# Its stderr is not a terminal, as under systemd, where it is the journal: no colour codes.
if grep -q $'\e' "$work/server.log"; then fail "the server's log has terminal escape codes"; fi
grep -q "veche is listening" "$work/server.log" || fail "the server's log lacks its start"
if grep -E "\b(ERROR|WARN)\b" "$work/server.log"; then fail "the installed server logged errors or warnings (above)"; fi
# The operator step of docs/deploy.md, as the veche user with the installed config.
veche_admin() {
  (cd / && $SUDO setpriv --reuid=veche --regid=veche --init-groups -- \
    veche admin --config /etc/veche/veche.toml "$@") 2>&1
}
# The role column of list-users for the account signed up above.
role_of_operator() {
  veche_admin list-users | awk '$1 == "operator@example.org" { print $2 }'
}
[ "$(role_of_operator)" = user ] || fail "list-users does not show the new account as a user"
veche_admin set-role --email operator@example.org --role admin >"$work/admin.log" \
  || { cat "$work/admin.log" >&2; fail "veche admin set-role failed"; }
[ "$(role_of_operator)" = admin ] || fail "after set-role, list-users does not show the account as admin"
say "stopped on SIGTERM; veche admin set-role/list-users as veche see the account"

# ---- install again over it (an upgrade's path through the maintainer scripts) ----
# The operator's edit of the settings stays, and so do the user, the modes and the database.
$SUDO sed -i 's/^# signup = "open"$/signup = "closed"/' /etc/veche/veche.toml
grep -qx 'signup = "closed"' /etc/veche/veche.toml || fail "could not edit /etc/veche/veche.toml"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install --reinstall -y -qq "$(realpath "$deb")" \
  >"$work/reinstall.log" 2>&1 || { cat "$work/reinstall.log" >&2; fail "installing the package again failed"; }
grep -qx 'signup = "closed"' /etc/veche/veche.toml || fail "installing again undid the edit of /etc/veche/veche.toml"
[ "$(getent passwd veche | cut -d: -f3)" = "$uid" ] || fail "installing again changed the veche user"
expect_stat /etc/veche/veche.toml "root:veche 640"
expect_stat /var/lib/veche "veche:veche 750"
[ "$(role_of_operator)" = admin ] || fail "installing again lost the account"
say "installed again: the edited settings, the user, the modes and the account kept"

# ---- remove, then purge ----
DEBIAN_FRONTEND=noninteractive $SUDO apt-get remove -y -qq veche >"$work/remove.log" 2>&1 \
  || { cat "$work/remove.log" >&2; fail "apt-get remove failed"; }
[ ! -e /usr/bin/veche ] || fail "apt-get remove left /usr/bin/veche"
[ ! -e "$unit_path" ] || fail "apt-get remove left $unit_path"
getent passwd veche >/dev/null || fail "apt-get remove took the veche user (docs: remove keeps it)"
$SUDO test -f /var/lib/veche/veche.db || fail "apt-get remove took the database (docs: remove keeps it)"
[ -f /etc/veche/veche.toml ] || fail "apt-get remove took /etc/veche/veche.toml (a conffile stays until purge)"
say "apt-get remove: binary and unit gone; user, database and settings kept"
# A file of the operator's own under /etc/veche (docs/deploy.md: certificates in tls/).
made_etc_file=yes
$SUDO install -d -m 0750 /etc/veche/tls
echo "operator's certificate" | $SUDO tee /etc/veche/tls/fullchain.pem >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get purge -y -qq veche >"$work/purge.log" 2>&1 \
  || { cat "$work/purge.log" >&2; fail "apt-get purge failed"; }
! getent passwd veche >/dev/null || fail "apt-get purge left the veche user"
! getent group veche >/dev/null || fail "apt-get purge left the veche group"
[ ! -e /var/lib/veche ] || fail "apt-get purge left /var/lib/veche"
[ ! -e /etc/veche/veche.toml ] || fail "apt-get purge left /etc/veche/veche.toml"
$SUDO test -f /etc/veche/tls/fullchain.pem || fail "apt-get purge took a file the package did not install"
$SUDO rm -r /etc/veche
made_etc_file=""
[ ! -e /etc/systemd/system/multi-user.target.wants/veche.service ] || fail "apt-get purge left the unit enabled"
[ "$(pkg_status)" = not-installed ] || fail "the package is $(pkg_status) after purge"
say "apt-get purge: user, group, /var/lib/veche, the settings and the enablement gone; the operator's /etc/veche/tls kept"
echo "package test: passed in $SECONDS s"
