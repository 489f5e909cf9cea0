#!/usr/bin/env bash
# Runs the core suite (pipeline, filters, sinks without framework extras; fast tests) on every
# supported Python other than the main one that this machine has: python3.X on PATH, or a
# pyenv version. Each gets its own virtual environment, .venv-3.X, with only rlpipe[test,media].
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
main="$("${PYTHON:-python3}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
core_suite=(tests/pipeline tests/filters tests/sinks tests/test_bad_input.py
            tests/test_hostile_input.py tests/test_snapshots.py tests/test_write_batch.py)

find_python() {
  local version="$1" candidate
  local pyenv_root
  pyenv_root="$(pyenv root 2>/dev/null || true)"
  for candidate in "python$version" "$pyenv_root"/versions/"$version".*/bin/"python$version"; do
    if "$candidate" -c 'import sys' >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
}

status=0
for version in 3.10 3.11 3.12 3.13; do
  [ "$version" = "$main" ] && continue
  python="$(find_python "$version")"
  if [ -z "$python" ]; then
    echo "==> Python $version: not on this machine, skipped"
    continue
  fi
  echo "==> core suite on Python $version ($python)"
  if ! (
    export PYTHON="$python" RLPIPE_VENV="$root/.venv-$version"
    source "$root/scripts/env.sh" test media
    "$venv/bin/pytest" -q -n 2 -m "not slow" -p no:cacheprovider "${core_suite[@]}"
  ); then
    status=1
  fi
done
exit "$status"
