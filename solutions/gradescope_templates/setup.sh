#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image
# (Ubuntu, this bundle unpacked in /autograder/source): install what grading
# needs. The grading itself is run_autograder.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-pip python3-venv
# The grader's Python packages, pinned below in requirements-grading.txt.
python3 -m pip install --no-cache-dir -r /autograder/source/requirements-grading.txt \
    || python3 -m pip install --no-cache-dir --break-system-packages -r /autograder/source/requirements-grading.txt
