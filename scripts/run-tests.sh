#!/usr/bin/env bash
# The test suite as `make test` runs it: in two passes over the same selection.
#   1. every test not marked `serial`, spread over TEST_WORKERS processes (pytest-xdist);
#   2. the `serial` tests (those that compare latencies or CPU time with a baseline measured in
#      the same test), one at a time, so that no other test's load skews their figures.
# Extra pytest arguments (a path, -k, -x) apply to both passes. Exit status: the first failing
# pass's; a run in which neither pass collected a test is a failure too.
set -uo pipefail

python=${PYTHON:-.venv/bin/python}
workers=${TEST_WORKERS:-2}

"$python" -m pytest -n "$workers" -m "not serial" "$@"
parallel=$?
"$python" -m pytest -m serial "$@"
serial=$?

if [ "$parallel" -eq 5 ] && [ "$serial" -eq 5 ]; then
    echo "make test: pytest collected no tests; that is a failure" >&2
    exit 5
fi
for status in "$parallel" "$serial"; do
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
        exit "$status"
    fi
done
exit 0
