"""Half of the object store's kill -9 test.

write ENDPOINT ACCESS SECRET LOG: puts objects (new keys and overwrites) until the store stops
answering, appending "key size" to LOG after each acknowledged put.
verify ENDPOINT ACCESS SECRET LOG: checks every logged object reads back whole, with the content
its size determines, and that listing shows no temporary or partial objects.
"""

import hashlib
import sys

import boto3
from botocore.config import Config


def content(key, size):
    seed = hashlib.sha256(f"{key}:{size}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def main():
    mode, endpoint, access, secret, log = sys.argv[1:6]
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=2, read_timeout=5),
    )
    if mode == "write":
        with open(log, "a") as out:
            n = 0
            while True:
                key = f"crash/{n % 200:04}"
                size = 1000 + (n * 7919) % 400_000
                try:
                    s3.put_object(Bucket="edgerag", Key=key, Body=content(key, size))
                except Exception:
                    return
                out.write(f"{key} {size}\n")
                out.flush()
                n += 1
    latest = {}
    with open(log) as lines:
        for line in lines:
            key, size = line.split()
            latest[key] = int(size)
    if len(latest) < 20:
        raise SystemExit(f"too few writes before the kill: {len(latest)}")
    for key, size in latest.items():
        body = s3.get_object(Bucket="edgerag", Key=key)["Body"].read()
        # An overwrite may have landed without its answer arriving; then the object is whole too.
        if body != content(key, size):
            if body != content(key, len(body)):
                raise SystemExit(f"{key} is corrupt after kill -9 ({len(body)} bytes)")
    listed = s3.list_objects_v2(Bucket="edgerag", Prefix="crash/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    if any("tmp" in k or "part" in k for k in keys) or not set(latest) <= set(keys):
        raise SystemExit(f"listing after kill -9 is inconsistent: {keys[:10]}")
    s3.put_object(Bucket="edgerag", Key="crash/after", Body=b"still writable")
    print(f"{len(latest)} objects intact")


if __name__ == "__main__":
    main()
