# Sourced by the scripts: makes (or reuses) the project's virtual environment and installs
# rlpipe into it in editable mode with the extras given as arguments.
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
echo "==> installing rlpipe[$extras] into $venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -e "$root[$extras]"
cd "$root"
