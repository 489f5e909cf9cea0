#!/usr/bin/env bash
# The main job: sets up .venv and runs `rlpipe demo` (an Acme EnvironmentLoop whose train and
# eval metrics flow through rlpipe to the terminal, CSV files and an offline Neptune run,
# all under ./runs/). Arguments are passed to `rlpipe demo`.
source "$(dirname "$0")/env.sh" acme neptune
exec "$venv/bin/rlpipe" demo "$@"
