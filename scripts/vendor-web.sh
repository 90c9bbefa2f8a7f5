#!/usr/bin/env bash
# Rebuilds the third-party libraries the browser client loads from web/vendor/, from the
# versions pinned in scripts/vendor-web/package-lock.json. The output is committed: the
# server embeds web/ and the client loads nothing from the internet. Run it only to change a
# version (edit package.json, `npm install --package-lock-only` there, then this script) and
# commit the new web/vendor/ files with the lockfile.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/vendor-web/package.json" "$here/vendor-web/package-lock.json" \
  "$here/vendor-web/mls-entry.js" "$work/"
cd "$work"
npm ci --no-audit --no-fund --silent
# ts-mls loads the libraries of other ciphersuites with import() on demand; the client uses
# MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, which needs only WebCrypto and @hpke/core,
# (@noble/ciphers and @noble/hashes are loaded statically by the bundle), so those stay out of the bundle (an import() of them would fail, and is never reached).
./node_modules/.bin/esbuild mls-entry.js --bundle --format=esm --target=es2022 \
  --minify --legal-comments=eof --charset=utf8 \
  --external:@noble/curves --external:@noble/post-quantum --external:@noble/ciphers/chacha.js --external:@hpke/chacha20poly1305 --external:@hpke/dhkem-x448 \
  --external:@hpke/ml-kem --external:@hpke/hybridkem-x-wing \
  --outfile="$root/web/vendor/ts-mls.js"
{
  echo "Licences of the code bundled in web/vendor/ts-mls.js."
  for pkg in ts-mls @hpke/core @hpke/common @noble/ciphers @noble/hashes; do
    echo; echo "== $pkg $(node -p "require('./node_modules/$pkg/package.json').version")"
    cat "node_modules/$pkg/LICENSE"*
  done
} >"$root/web/vendor/ts-mls.LICENSE.txt"
echo "web/vendor/ts-mls.js: $(wc -c <"$root/web/vendor/ts-mls.js") bytes (ts-mls $(node -p 'require("./node_modules/ts-mls/package.json").version'))"
