#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs
# `cargo test --workspace`. Extra arguments go to `cargo test`.
#
# Installs (once, cached under ~/.cache): the `bqemulator` BigQuery emulator from PyPI into a
# virtual environment, with DuckDB's spatial extension from its PyPI wheel (the emulator would
# otherwise try to download it at start-up). The BigQuery tests start and stop their own
# emulator processes on free loopback ports. Also installs `nats-server` from the distribution's
# packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Build artefacts live outside the clone so repeated runs (and CI) reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tagpipe-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

venv="${TAGPIPE_BQ_VENV:-$HOME/.cache/tagpipe-bq-venv}"
emu_home="${TAGPIPE_BQ_HOME:-$HOME/.cache/tagpipe-bq-home}"
if [ ! -x "$venv/bin/bqemulator" ]; then
  echo "installing the BigQuery emulator into $venv (once)…"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 numpy
fi
ext_dir="$emu_home/.duckdb/extensions/v1.5.5/linux_amd64"
mkdir -p "$ext_dir"
ln -sf "$(ls "$venv"/lib/python3*/site-packages/duckdb_extension_spatial/extensions/v1.5.5/spatial.duckdb_extension)" "$ext_dir/"
export TAGPIPE_BQ_EMULATOR="$venv/bin/bqemulator"

# nats-server (the NATS tests start and stop their own servers on loopback ports).
if ! command -v nats-server >/dev/null; then
  echo "installing nats-server (once)…"
  apt_install nats-server
fi
export TAGPIPE_BQ_HOME="$emu_home"

cargo test --workspace "$@"
