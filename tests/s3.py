"""A real S3 API on 127.0.0.1 for tests: moto's server, reached through pyarrow's S3 filesystem
with ``endpoint_override`` in the URI, as a MinIO or Ceph bucket would be."""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

BUCKET = "study-sweeps"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[str]:
    """A bucket on a fresh, empty S3 server (moto keeps its buckets per process: reset first);
    yields the storage URI ``s3://BUCKET/runs?...``. The credentials are put in this process's
    environment (Ray workers started after inherit them)."""
    import pyarrow.fs
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"127.0.0.1:{port}"
        urllib.request.urlopen(
            urllib.request.Request(f"http://{endpoint}/moto-api/reset", method="POST"), timeout=30
        )
        pyarrow.fs.S3FileSystem(
            endpoint_override=endpoint,
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        ).create_dir(BUCKET)
        yield f"s3://{BUCKET}/runs?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
