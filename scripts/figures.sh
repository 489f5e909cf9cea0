#!/usr/bin/env bash
# Regenerates the README's picture: sets up .venv (as demo.sh does), runs the demo afresh into
# runs/readme (--overwrite: the earlier run there is removed; no Neptune run, no progress bar)
# and draws its
# learning curves with `rlpipe plot` into benchmarks/figures/demo-learning-curves.png: the train
# return faint under its smoothed curve, and the evaluation mean with its min..max band.
# Arguments are passed to `rlpipe demo` (e.g. --episodes 500 --seed 1).
source "$(dirname "$0")/env.sh" acme plot
out=benchmarks/figures/demo-learning-curves.png
"$venv/bin/rlpipe" demo --run-name readme --overwrite --no-neptune --no-progress --seed 0 "$@"
"$venv/bin/rlpipe" plot runs/readme --band minmax --dpi 90 \
  --title "rlpipe demo: tabular Q-learning on CartPole-v1 (Acme EnvironmentLoop)" \
  --out "$out"
