#!/usr/bin/env bash
# The peer for the crawl benchmark, installed as datatrove's users install it, in its own
# venv (not Shammie's, whose trafilatura is 2.x): datatrove 0.10 with the `io` extra (WARC
# reading) and the `processing` extra (trafilatura <1.12, fastText, tldextract), plus what
# datatrove asks for at run time and no extra declares: spaCy (English word splits) and
# aiohttp/requests (fsspec's HTTP file system, through which it fetches its LID model).
#   benchmarks/peer_datatrove_env.sh [VENV]      (default: benchmarks/_work/datatrove-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-benchmarks/_work/datatrove-venv}
UV=${UV:-$(command -v uv || echo .venv/bin/uv)}
if [ ! -x "$VENV/bin/python" ]; then
  "$UV" venv -q --python "${PYTHON:-python3}" "$VENV"
fi
"$UV" pip install --python "$VENV/bin/python" -q --compile-bytecode \
    "datatrove[io,processing]==0.10.1" spacy aiohttp requests
"$VENV/bin/python" -c "import datatrove, trafilatura, spacy; print('datatrove', __import__('importlib.metadata').metadata.version('datatrove'), 'trafilatura', trafilatura.__version__, 'spacy', spacy.__version__)"
