#!/usr/bin/env bash
# Creates (or refreshes) the two environments the project needs; idempotent and quiet when
# nothing changed.
#   .venv          the sidecar/method stack (torch, nerfstudio, diffusers, ...) + dev tools
#                  + Ray for the editor pool's tests (the `ray` extra)
#   .venv-blender  bpy 4.5 LTS and nothing else: the add-on must run on the wheels it bundles
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

sidecar_stamp=$(stamp_of pyproject.toml)
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
if [ "$(cat .venv/.edit3d-stamp 2>/dev/null)" != "$sidecar_stamp" ]; then
  echo "[setup] installing the sidecar environment into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev,ray]'
  echo "$sidecar_stamp" > .venv/.edit3d-stamp
fi

blender_stamp=$(echo "bpy==4.5.15 numpy<2" | sha256sum | cut -c1-16)
if [ ! -x .venv-blender/bin/python ]; then "$PY" -m venv .venv-blender; fi
if [ "$(cat .venv-blender/.edit3d-stamp 2>/dev/null)" != "$blender_stamp" ]; then
  echo "[setup] installing bpy 4.5 LTS into .venv-blender"
  .venv-blender/bin/python -m pip install -q --upgrade pip
  .venv-blender/bin/python -m pip install -q 'bpy==4.5.15' 'numpy<2'
  echo "$blender_stamp" > .venv-blender/.edit3d-stamp
fi
