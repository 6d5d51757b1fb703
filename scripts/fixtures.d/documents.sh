#!/usr/bin/env bash
# MuPDF renders of the corpus pages, the peer the PDF decoding test compares against.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_document_fixtures.py
