"""A real S3 API for tests: moto's server on loopback with one empty bucket (not collected:
no ``test_`` prefix). Callers import it after ``pytest.importorskip("moto.server")``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    client: Any  # a boto3 S3 client on the server
    endpoint: str
    #: fsspec/s3fs storage options that reach the server
    options: dict[str, str]


@contextmanager
def moto_s3(bucket: str) -> Iterator[S3Server]:
    """Start moto's server on 127.0.0.1 (any free port) with ``bucket`` created and test
    credentials in the environment; stop it and restore the environment afterwards."""
    import boto3
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    for k, v in CREDS.items():
        mp.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        yield S3Server(client, endpoint,
                       {"endpoint_url": endpoint, "key": "testing", "secret": "testing"})
    finally:
        server.stop()
        mp.undo()
