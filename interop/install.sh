#!/usr/bin/env bash
# Installs what e2e/tests/it/interop.rs runs: py-consul (interop/requirements.txt)
# in a virtualenv under the target dir ($CARGO_TARGET_DIR or ./target). Idempotent:
# does nothing when the pinned versions are there. Run by .ci/run, and by the
# test itself when the virtualenv is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$TARGET/interop-venv
REQUIREMENTS=$ROOT/interop/requirements.txt
STAMP=$VENV/.requirements
if [[ -x $VENV/bin/python ]] && cmp -s "$REQUIREMENTS" "$STAMP"; then
    exit 0
fi
command -v python3 >/dev/null || { echo "interop/install.sh: python3 is required" >&2; exit 1; }
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
cp "$REQUIREMENTS" "$STAMP"
