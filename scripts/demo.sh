#!/usr/bin/env bash
# The main job: sets up .venv and runs `rlpipe demo` (an Acme EnvironmentLoop whose train and
# eval metrics flow through rlpipe to the terminal, CSV files, TensorBoard event files and an
# offline Neptune run, all under ./runs/; `rlpipe plot` draws them afterwards). Arguments are
# passed to `rlpipe demo`.
source "$(dirname "$0")/env.sh" acme neptune tensorboard plot
exec "$venv/bin/rlpipe" demo "$@"
