#!/usr/bin/env bash
# The whole test suite: sets up .venv with every extra, then ruff, mypy, the import layers
# (lint-imports), the docs build (mkdocs --strict: any warning fails it) and pytest (slow
# integration tests included); then, when no arguments are given, the core suite on every
# other supported Python this machine has (scripts/versions.sh). Every step runs even when an
# earlier one failed; the script ends with the list of failed steps and exits 1 if there are
# any. Arguments are passed to pytest.
source "$(dirname "$0")/env.sh" all

failed=()
step() {  # step NAME COMMAND...: runs COMMAND, remembers NAME if it fails
  local name="$1"
  shift
  echo "==> $name"
  if ! "$@"; then
    failed+=("$name")
  fi
}

docs() {
  # Without --quiet, so that mkdocs counts (and --strict fails on) every warning; its INFO
  # lines are the only output left out. A WARNING or ERROR line fails the step even if a
  # plugin's warning escaped mkdocs' count.
  local site log status=0
  site="$(mktemp -d)"
  log="$site.log"
  NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --site-dir "$site" >"$log" 2>&1 \
    || status=$?
  grep -v '^INFO ' "$log" || true
  if grep -qE '^(WARNING|ERROR)' "$log"; then
    status=1
  fi
  rm -rf "$site" "$log"
  return "$status"
}

start=$SECONDS
step ruff "$venv/bin/ruff" check .
step mypy "$venv/bin/mypy"
step "import layers" "$venv/bin/lint-imports"
step docs docs
step pytest "$venv/bin/pytest" -q --durations=15 -n 2 --dist loadgroup "$@"
if [ "$#" -eq 0 ]; then
  step "other Pythons" bash "$root/scripts/versions.sh"
fi
echo "==> $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> FAILED: $(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')" >&2
  exit 1
fi
echo "==> all passed"
