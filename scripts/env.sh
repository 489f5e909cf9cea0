# Sourced by the scripts: makes (or reuses) the project's virtual environment and installs
# rlpipe into it in editable mode with the extras given as arguments.
#
# The first install downloads and installs every dependency of those extras (for `all`: torch,
# ray, tensorboard, mlflow, wandb, ...: minutes); pip's own output shows each package as it
# goes. A stamp inside the venv records what was installed
# (a hash of pyproject.toml, the extras, this checkout's path and the Python), so a later run
# with nothing changed skips pip altogether; the code itself is installed in editable mode, so
# edits need no reinstall.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RLPIPE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "rlpipe needs Python >= 3.10; set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
extras="$(IFS=,; echo "$*")"
stamp="$venv/.rlpipe-installed-${extras//,/-}"
wanted="$(
  {
    cat "$root/pyproject.toml"
    echo "$extras" "$root"
    "$venv/bin/python" -c 'import sys; print(sys.version)'
  } | "$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "==> rlpipe[$extras] is installed in $venv (pyproject.toml unchanged since)"
else
  if [ -f "$stamp" ]; then
    echo "==> pyproject.toml changed: updating rlpipe[$extras] in $venv"
    quiet=(-q)
  else
    echo "==> installing rlpipe[$extras] into $venv: the first time, pip downloads and installs"
    echo "    every dependency (on a 2-core machine about 3 min for the demo's extras, several"
    echo "    more for [all] with torch and ray); later runs skip this step while"
    echo "    pyproject.toml is unchanged"
    quiet=()
  fi
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --disable-pip-version-check ${quiet[@]+"${quiet[@]}"} -e "$root[$extras]"
  echo "$wanted" >"$stamp"
fi
cd "$root"
