#!/usr/bin/env bash
# Uploads (multi-page TIFF, JPEG) and the ALTO v4 XSD for the archive-format tests.
# Needs the document renders (documents.sh runs first: fixtures.d runs in name order).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/make_archive_fixtures.py
