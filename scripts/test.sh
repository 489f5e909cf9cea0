#!/usr/bin/env bash
# The whole test suite: sets up .venv with every extra, then ruff, mypy, the import layers
# (lint-imports) and pytest (slow integration tests included). Arguments are passed to pytest.
source "$(dirname "$0")/env.sh" all
echo "==> ruff"
"$venv/bin/ruff" check .
echo "==> mypy"
"$venv/bin/mypy"
echo "==> import layers"
"$venv/bin/lint-imports"
echo "==> pytest"
"$venv/bin/pytest" -q "$@"
