#!/usr/bin/env bash
# The whole test suite: sets up .venv with every extra, then ruff, mypy, the import layers
# (lint-imports), the docs build (mkdocs --strict) and pytest (slow integration tests
# included); then, when no arguments are given, the core suite on every other supported
# Python this machine has (scripts/versions.sh). Arguments are passed to pytest.
source "$(dirname "$0")/env.sh" all
echo "==> ruff"
"$venv/bin/ruff" check .
echo "==> mypy"
"$venv/bin/mypy"
echo "==> import layers"
"$venv/bin/lint-imports"
echo "==> docs"
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --quiet --site-dir "$site"
rm -rf "$site"
echo "==> pytest"
"$venv/bin/pytest" -q "$@"
if [ "$#" -eq 0 ]; then
  bash "$root/scripts/versions.sh"
fi
