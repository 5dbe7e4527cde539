"""An S3-compatible server for the tests: moto's server mode (moto_server, ThreadedMotoServer).

It speaks the S3 HTTP protocol (multipart uploads, ranged GETs, presigned URLs, server-side copy),
so the S3 store is exercised over real HTTP; it is the S3 protocol peer here, not AWS itself.
"""

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest

from shipping.ports import ephemeral_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "slipway-test", "AWS_SECRET_ACCESS_KEY": "slipway-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}
PART_BYTES = 5 * 1024 * 1024  # S3's smallest part (every part but the last)



@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    os.environ.update(CREDENTIALS)
    port = ephemeral_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_environment(endpoint: str, bucket: str) -> dict[str, str]:
    """What a process (web or worker) needs to use the bucket as its store."""
    return CREDENTIALS | {"SLIPWAY_STORE": "s3", "SLIPWAY_S3_BUCKET": bucket, "SLIPWAY_S3_ENDPOINT_URL": endpoint,
                          "SLIPWAY_S3_PREFIX": "slipway", "SLIPWAY_S3_PART_BYTES": str(PART_BYTES)}


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    bucket = f"slipway-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_store_settings(settings, s3_endpoint: str, s3_bucket: str, tmp_path) -> str:
    """This test process uses the bucket as its store; returns the bucket's name."""
    settings.SLIPWAY_STORE = "s3"
    settings.SLIPWAY_S3_BUCKET = s3_bucket
    settings.SLIPWAY_S3_ENDPOINT_URL = s3_endpoint
    settings.SLIPWAY_S3_PREFIX = "slipway"
    settings.SLIPWAY_S3_PART_BYTES = PART_BYTES
    settings.SLIPWAY_CACHE_DIR = tmp_path / "cache"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return s3_bucket


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def open_multipart_uploads(endpoint: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in listing.get("Uploads", [])]
