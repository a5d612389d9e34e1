#!/bin/sh
# umoci and skopeo for tests/image.rs (a_layout_built_by_umoci_unpacks,
# a_docker_archive_written_by_skopeo_unpacks: images written by other tools,
# unpacked by packrun). Called from tests/run-all.sh.
set -eu
if ! command -v umoci >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends umoci skopeo
fi
