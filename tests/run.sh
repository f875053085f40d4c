#!/usr/bin/env bash
# The README's test command: sets up a fresh machine (virtualenv, packages, Debian's chromium for the
# browser tests) and runs lint and the whole test suite, on two workers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# uv installs the requirements: it fetches and unpacks the wheels in parallel (a fresh venv here: 17 s with an empty
# cache, against 1 min 50 s for pip), and keeps them in its cache for the next clone. Like pip's --no-compile, it
# leaves the bytecode to the modules a test imports, which Python compiles and caches, instead of every file of every
# package. Caches them, that is, unless PYTHONDONTWRITEBYTECODE is set (some shells set it): then each Python process
# the suite starts (dozens: train.py runs, apps, commands) compiled TensorFlow anew (import tensorflow, keras: 23 s a
# process on a slow machine, 9 s from the cache; gradio 11 s, 7 s)
unset PYTHONDONTWRITEBYTECODE
UV_VERSION=0.13.10
.venv/bin/python -m uv --version 2>/dev/null | grep -q " $UV_VERSION" ||
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
.venv/bin/python -m uv pip install -q --python .venv/bin/python -r requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests…"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "chromium is not installed (sudo apt-get install chromium): the browser tests will be skipped"
  fi
fi
# axe-core, the accessibility audit the browser tests run on every tab (a registry package: npm's own tarball)
AXE_VERSION=4.14.1
if [ ! -f ".cache/axe-core-$AXE_VERSION/axe.min.js" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p .cache && (cd .cache && npm pack -s "axe-core@$AXE_VERSION" >/dev/null && mkdir -p "axe-core-$AXE_VERSION" &&
    tar xzf "axe-core-$AXE_VERSION.tgz" -C "axe-core-$AXE_VERSION" --strip-components=1 package/axe.min.js &&
    rm "axe-core-$AXE_VERSION.tgz") || echo "npm pack axe-core failed: the accessibility checks will fail"
fi
.venv/bin/ruff check .
# Two workers: much of a test is single-threaded (Python, graph tracing), so two share the 2 cores well
# (10 min 15 s serial, 6 min 47 s with two, same machine, same hour). `-n 0` runs serially.
exec .venv/bin/python -m pytest -n 2 "$@"
