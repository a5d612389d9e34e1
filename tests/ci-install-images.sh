#!/bin/sh
# umoci for tests/image.rs (a_layout_built_by_umoci_unpacks: an OCI layout
# built by another tool, unpacked by packrun). Called from .ci/run.
set -eu
if ! command -v umoci >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends umoci
fi
