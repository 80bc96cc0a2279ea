#!/bin/sh
# Prints the path of a uv binary, installing uv first if this machine has none.
# Needs only python3: tries a private virtualenv, then pip --user.
set -eu
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
if [ -x "$HOME/.local/bin/uv" ]; then echo "$HOME/.local/bin/uv"; exit 0; fi
TOOLS="${ECRIN_TOOLS_DIR:-$HOME/.cache/ecrin-tools}"
if [ -x "$TOOLS/bin/uv" ]; then echo "$TOOLS/bin/uv"; exit 0; fi
echo "uv not found; installing it" >&2
if python3 -m venv "$TOOLS" >/dev/null 2>&1 && "$TOOLS/bin/python" -m pip install -q uv >&2; then
  echo "$TOOLS/bin/uv"; exit 0
fi
python3 -m pip install -q --user uv >&2 || python3 -m pip install -q --user --break-system-packages uv >&2
echo "$HOME/.local/bin/uv"
