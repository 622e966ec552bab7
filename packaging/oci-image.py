#!/usr/bin/env python3
"""Writes an OCI image archive for Strongroom without a container engine.

The image holds the static binary, CA certificates, /etc/passwd and /etc/group entries for
the unprivileged user 10001, /etc/hosts, /etc/nsswitch.conf and an empty data volume. The
layout (oci-layout, index.json, manifest, config with history, one gzip layer) is written
directly and packed into one tar: `skopeo inspect oci-archive:FILE` and `podman load` read it.

Usage: oci-image.py --binary PATH --version V --revision SHA --out FILE [--ca-bundle PATH]
Everything is dated SOURCE_DATE_EPOCH (default: the binary's mtime), so the output is
reproducible for a given binary.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

UID = 10001


def add_file(tar, name, data, mode, mtime, uid=0, gid=0):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name, mode, mtime, uid=0, gid=0):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    tar.addfile(info)


def layer(binary, ca_bundle, mtime):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/bin", "var", "var/lib", "tmp"]:
            add_dir(tar, d, 0o1777 if d == "tmp" else 0o755, mtime)
        add_dir(tar, "var/lib/strongroom", 0o700, mtime, UID, UID)
        with open(binary, "rb") as f:
            add_file(tar, "usr/bin/strongroom", f.read(), 0o755, mtime)
        with open(ca_bundle, "rb") as f:
            add_file(tar, "etc/ssl/certs/ca-certificates.crt", f.read(), 0o644, mtime)
        add_file(tar, "etc/passwd",
                 b"root:x:0:0:root:/root:/sbin/nologin\n"
                 b"strongroom:x:10001:10001:strongroom:/var/lib/strongroom:/sbin/nologin\n",
                 0o644, mtime)
        add_file(tar, "etc/group", b"root:x:0:\nstrongroom:x:10001:\n", 0o644, mtime)
        add_file(tar, "etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n", 0o644, mtime)
        add_file(tar, "etc/nsswitch.conf", b"hosts: files dns\n", 0o644, mtime)
    plain = raw.getvalue()
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=mtime) as gz:
        gz.write(plain)
    return plain, packed.getvalue()


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return "sha256:" + digest, len(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--revision", default="unknown")
    p.add_argument("--out", required=True)
    p.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    a = p.parse_args()
    for path in (a.binary, a.ca_bundle):
        if not os.path.isfile(path):
            sys.exit(f"oci: {path} does not exist")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", int(os.path.getmtime(a.binary))))
    created = __import__("datetime").datetime.fromtimestamp(
        mtime, __import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    blobs = {}
    plain, packed = layer(a.binary, a.ca_bundle, mtime)
    diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
    layer_digest, layer_size = blob(blobs, packed)
    labels = {
        "org.opencontainers.image.title": "strongroom",
        "org.opencontainers.image.description":
            "Self-hosted AI operations appliance with encrypted per-tenant stores",
        "org.opencontainers.image.version": a.version,
        "org.opencontainers.image.revision": a.revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{UID}",
            "Entrypoint": ["/usr/bin/strongroom"],
            "Cmd": ["serve", "--init"],
            "Env": [
                "STRONGROOM_DATA_DIR=/var/lib/strongroom",
                # Inside a container the port is published by the runtime: listen on all
                # interfaces of the container's own network namespace.
                "STRONGROOM_SERVER__LISTEN=0.0.0.0:8443",
                "STRONGROOM_SERVER__ALLOW_PUBLIC_LISTEN=true",
                "STRONGROOM_LOG__FILE=false",
                # A secret named root-key (docker/podman --secret) is the root key.
                "CREDENTIALS_DIRECTORY=/run/secrets",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            ],
            "ExposedPorts": {"8443/tcp": {}},
            "Volumes": {"/var/lib/strongroom": {}},
            "WorkingDir": "/var/lib/strongroom",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "packaging/oci: static binary, "
                     "CA certificates, passwd/group for uid 10001, hosts, nsswitch.conf"}],
    }
    config_digest, config_size = blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_size}],
        "annotations": labels,
    }
    manifest_digest, manifest_size = blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": a.version}}],
    }
    tmp = a.out + ".partial"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:
        add_file(out, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
                 0o644, mtime)
        add_file(out, "index.json", json.dumps(index, sort_keys=True).encode(), 0o644, mtime)
        for d in ("blobs", "blobs/sha256"):
            add_dir(out, d, 0o755, mtime)
        for digest in sorted(blobs):
            add_file(out, "blobs/sha256/" + digest, blobs[digest], 0o644, mtime)
    os.replace(tmp, a.out)
    print(a.out)


if __name__ == "__main__":
    main()
