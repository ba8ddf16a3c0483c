#!/usr/bin/env bash
# Set up GAN Atlas in ./.venv: Python packages (pip) and, where missing, the system libraries Qt needs (apt).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)" >&2
  "$PY" -m venv .venv
fi

# System libraries that Qt's platform plugins load (offscreen for tests, xcb for a real window).
need_apt=()
for pair in libEGL.so.1:libegl1 libGL.so.1:libgl1 libxkbcommon.so.0:libxkbcommon0 libfontconfig.so.1:libfontconfig1 \
            libdbus-1.so.3:libdbus-1-3 libxkbcommon-x11.so.0:libxkbcommon-x11-0 libxcb-cursor.so.0:libxcb-cursor0 \
            libxcb-icccm.so.4:libxcb-icccm4 libxcb-keysyms.so.1:libxcb-keysyms1 libxcb-image.so.0:libxcb-image0 \
            libxcb-render-util.so.0:libxcb-render-util0 libxcb-shape.so.0:libxcb-shape0 libxcb-xkb.so.1:libxcb-xkb1 \
            libX11-xcb.so.1:libx11-xcb1 libglib-2.0.so.0:libglib2.0-0; do
  lib="${pair%%:*}"; pkg="${pair##*:}"
  ldconfig -p 2>/dev/null | grep -q "$lib" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing system libraries: ${need_apt[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null) \
      || echo "setup: warning: apt-get could not install ${need_apt[*]}; the GUI may not start" >&2
  else
    echo "setup: warning: missing system libraries for Qt: ${need_apt[*]} (install them with your package manager)" >&2
  fi
fi

if ! .venv/bin/python -m pip install -q -r requirements.txt; then
  echo "setup: pip install failed" >&2; exit 1
fi
.venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
echo "setup: ready (.venv)" >&2
