"""Adapters from RL frameworks (Acme, Stable-Baselines3, Ray Tune/RLlib, Spinning Up) into
rlpipe pipelines. Each submodule imports its framework lazily and names the extra to install
when it is missing."""
