#!/usr/bin/env bash
# Refresh the browser files notiflow vendors, straight from the npm registry (`npm pack`, no
# install, no build): pusher-js and laravel-echo for the pages (src/notiflow/pages/static/vendor/),
# axe-core for the browser tests' accessibility check (tests/pages/vendor/).
#
#   scripts/vendor-js.sh                      # the versions pinned below
#   PUSHER_JS=8.6.0 LARAVEL_ECHO=2.5.0 AXE_CORE=4.14.1 scripts/vendor-js.sh
#
# The pages' copy of clients/js/notiflow-replay.js is refreshed too. Versions are written to the
# README.md beside the files; commit the result.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PUSHER_JS=${PUSHER_JS:-8.6.0}
LARAVEL_ECHO=${LARAVEL_ECHO:-2.5.0}
AXE_CORE=${AXE_CORE:-4.14.1}

PAGES_VENDOR=src/notiflow/pages/static/vendor
TESTS_VENDOR=tests/pages/vendor

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

unpack() { # package version -> directory holding the package's files
    local package=$1 version=$2
    mkdir -p "$work/$package"
    (cd "$work/$package" && npm pack --silent "$package@$version" >/dev/null)
    tar -xzf "$work/$package"/*.tgz -C "$work/$package"
    echo "$work/$package/package"
}

pusher=$(unpack pusher-js "$PUSHER_JS")
echo_dir=$(unpack laravel-echo "$LARAVEL_ECHO")
axe=$(unpack axe-core "$AXE_CORE")

mkdir -p "$PAGES_VENDOR/pusher-js" "$PAGES_VENDOR/laravel-echo" "$TESTS_VENDOR/axe-core"
cp "$pusher/dist/web/pusher.min.js" "$pusher/dist/web/pusher.min.js.LICENSE.txt" \
    "$PAGES_VENDOR/pusher-js/"
cp "$pusher/LICENCE" "$PAGES_VENDOR/pusher-js/LICENCE"
cp "$echo_dir/dist/echo.iife.js" "$PAGES_VENDOR/laravel-echo/"
cp "$echo_dir/LICENSE.md" "$PAGES_VENDOR/laravel-echo/LICENSE.md"
cp "$axe/axe.min.js" "$TESTS_VENDOR/axe-core/"
cp "$axe/LICENSE" "$TESTS_VENDOR/axe-core/LICENSE"
cp clients/js/notiflow-replay.js "$PAGES_VENDOR/notiflow-replay.js"

cat > "$PAGES_VENDOR/README.md" <<README
# Vendored browser files

Served by notiflow at \`/static/vendor/...\`; the notification center loads them with plain
\`<script>\` tags (no bundler). Refreshed by \`scripts/vendor-js.sh\` from the npm registry.

| file | npm package | version | licence |
|---|---|---|---|
| \`pusher-js/pusher.min.js\` | pusher-js (\`dist/web/pusher.min.js\`) | $PUSHER_JS | MIT, \`pusher-js/LICENCE\` |
| \`laravel-echo/echo.iife.js\` | laravel-echo (\`dist/echo.iife.js\`, global \`Echo\`) | $LARAVEL_ECHO | MIT, \`laravel-echo/LICENSE.md\` |
| \`notiflow-replay.js\` | notiflow's own \`clients/js/notiflow-replay.js\` (a copy) | | MIT |
README

cat > "$TESTS_VENDOR/README.md" <<README
# Vendored for the browser tests

| file | npm package | version | licence |
|---|---|---|---|
| \`axe-core/axe.min.js\` | axe-core | $AXE_CORE | MPL-2.0, \`axe-core/LICENSE\` |

Refreshed by \`scripts/vendor-js.sh\`. Only the tests load it (injected into the page under test);
it is not part of the notiflow package.
README

echo "vendored pusher-js $PUSHER_JS, laravel-echo $LARAVEL_ECHO, axe-core $AXE_CORE"
