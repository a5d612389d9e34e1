#!/usr/bin/env python3
"""Writes a small OCI image layout from host files: what `skopeo copy` or
`umoci` would give, with nothing but Python's standard library.

    make-oci.py OUT [--tag T] [--env K=V]... [--workdir DIR] [--user U]
                [--entrypoint JSON] [--cmd JSON]
                --layer SRC:DST[,SRC:DST...] [--layer ...]

Each --layer is one layer: host files (or directories, copied whole; a
symbolic link given is followed) at paths inside the image. DST `.wh.NAME` entries (SRC `-`) are whiteouts.
Files keep their mode; owners are root's (0:0), as in a real image.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def layer(spec):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(src, dst):
            info = t.gettarinfo(src, arcname=dst)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isfile():
                with open(src, "rb") as f:
                    t.addfile(info, f)
            else:
                t.addfile(info)
            if os.path.isdir(src) and not os.path.islink(src):
                for name in sorted(os.listdir(src)):
                    add(os.path.join(src, name), dst + "/" + name)

        for pair in spec.split(","):
            src, dst = pair.split(":", 1)
            dst = dst.strip("/")
            if src == "-":
                info = tarfile.TarInfo(dst)
                info.mode = 0o644
                t.addfile(info, io.BytesIO(b""))
                continue
            # Parent directories first, as image tools write them.
            parts = dst.split("/")[:-1]
            for i in range(len(parts)):
                d = tarfile.TarInfo("/".join(parts[: i + 1]))
                d.type = tarfile.DIRTYPE
                d.mode = 0o755
                t.addfile(d)
            # The file a link names, not the link (a library's link points
            # outside the image).
            add(os.path.realpath(src), dst)
    tar = raw.getvalue()
    return tar, gzip.compress(tar, mtime=0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--tag", default="latest")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir")
    p.add_argument("--user")
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--layer", action="append", required=True)
    a = p.parse_args()
    os.makedirs(os.path.join(a.out, "blobs", "sha256"), exist_ok=True)
    layers, diff_ids = [], []
    for spec in a.layer:
        tar, gz = layer(spec)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        digest, size = blob(a.out, gz)
        layers.append({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": size,
        })
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {"Env": a.env or ["PATH=/bin:/usr/bin"]}
    if a.workdir:
        config["WorkingDir"] = a.workdir
    if a.user:
        config["User"] = a.user
    if a.entrypoint:
        config["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd:
        config["Cmd"] = json.loads(a.cmd)
    cfg = {
        "architecture": arch,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdigest, csize = blob(a.out, json.dumps(cfg).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": layers,
    }
    mdigest, msize = blob(a.out, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest,
            "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": a.tag},
        }],
    }
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(mdigest)


if __name__ == "__main__":
    main()
