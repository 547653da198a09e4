"""Drives an S3 endpoint with boto3 (AWS's own client) and checks what edgerag relies on.

Usage: s3_conformance.py ENDPOINT ACCESS_KEY SECRET_KEY
Exits non-zero with the failing check on the first difference from S3's behaviour.
"""

import base64
import hashlib
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def client(endpoint, access_key, secret_key, **config):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            **config,
        ),
    )


def error_code(call):
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected an error, the call succeeded")


def main():
    endpoint, access_key, secret_key = sys.argv[1:4]
    s3 = client(endpoint, access_key, secret_key)
    checks = 0

    def check(condition, what):
        nonlocal checks
        if not condition:
            raise AssertionError(what)
        checks += 1

    # Authentication: a wrong secret, an unknown key and an unsigned request are all refused.
    wrong = client(endpoint, access_key, secret_key + "x")
    check(error_code(lambda: wrong.list_buckets())[1] == 403, "a wrong secret is refused")
    stranger = client(endpoint, "someone-else", secret_key)
    check(error_code(lambda: stranger.list_buckets())[1] == 403, "an unknown access key is refused")
    import urllib.request

    try:
        urllib.request.urlopen(endpoint + "/")
        raise AssertionError("an unsigned request was served")
    except urllib.error.HTTPError as error:
        check(error.code == 403, f"an unsigned request gets 403, not {error.code}")

    # Buckets.
    s3.create_bucket(Bucket="conformance")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    check("conformance" in names, f"the new bucket is listed: {names}")
    s3.head_bucket(Bucket="conformance")
    check(error_code(lambda: s3.head_bucket(Bucket="missing-bucket"))[1] == 404, "head of a missing bucket is 404")
    code, status = error_code(lambda: s3.get_object(Bucket="missing-bucket", Key="k"))
    check((code, status) == ("NoSuchBucket", 404), f"missing bucket: {code} {status}")

    # Objects: put, get, head, metadata, content type.
    body = b"hello, object store\n" * 1000
    put = s3.put_object(
        Bucket="conformance",
        Key="docs/a.txt",
        Body=body,
        ContentType="text/plain",
        Metadata={"project": "p1"},
    )
    check(put["ETag"].strip('"') == hashlib.md5(body).hexdigest(), "the ETag of a simple put is its MD5")
    got = s3.get_object(Bucket="conformance", Key="docs/a.txt")
    check(got["Body"].read() == body, "get returns what was put")
    check(got["ContentType"] == "text/plain", f"content type kept: {got['ContentType']}")
    check(got["Metadata"] == {"project": "p1"}, f"user metadata kept: {got['Metadata']}")
    head = s3.head_object(Bucket="conformance", Key="docs/a.txt")
    check(head["ContentLength"] == len(body), "head reports the length")
    code, status = error_code(lambda: s3.get_object(Bucket="conformance", Key="docs/missing"))
    check((code, status) == ("NoSuchKey", 404), f"missing key: {code} {status}")
    check(error_code(lambda: s3.head_object(Bucket="conformance", Key="docs/missing"))[1] == 404, "head of a missing key is 404")

    # Ranges.
    ranged = s3.get_object(Bucket="conformance", Key="docs/a.txt", Range="bytes=7-18")
    check(ranged["Body"].read() == body[7:19], "a byte range returns exactly those bytes")
    check(ranged["ResponseMetadata"]["HTTPStatusCode"] == 206, "a range answers 206")
    suffix = s3.get_object(Bucket="conformance", Key="docs/a.txt", Range="bytes=-5")
    check(suffix["Body"].read() == body[-5:], "a suffix range returns the last bytes")

    # A wrong Content-MD5 is refused and the previous object is kept.
    wrong_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    code, status = error_code(
        lambda: s3.put_object(Bucket="conformance", Key="docs/a.txt", Body=b"replacement", ContentMD5=wrong_md5)
    )
    check(status == 400 and code in ("BadDigest", "InvalidDigest"), f"wrong Content-MD5: {code} {status}")
    kept = s3.get_object(Bucket="conformance", Key="docs/a.txt")["Body"].read()
    check(kept == body, "a refused write leaves the previous object intact")
    right_md5 = base64.b64encode(hashlib.md5(b"replacement").digest()).decode()
    s3.put_object(Bucket="conformance", Key="docs/a.txt", Body=b"replacement", ContentMD5=right_md5)
    check(s3.get_object(Bucket="conformance", Key="docs/a.txt")["Body"].read() == b"replacement", "overwrite")

    # List v2 with prefix, delimiter and pagination.
    for i in range(7):
        s3.put_object(Bucket="conformance", Key=f"list/{i:02}.bin", Body=bytes([i]) * (i + 1))
    s3.put_object(Bucket="conformance", Key="list/sub/x.bin", Body=b"x")
    keys, token = [], None
    while True:
        kwargs = {"Bucket": "conformance", "Prefix": "list/", "MaxKeys": 3}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        check(page["KeyCount"] <= 3, "a page holds at most MaxKeys")
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    expected = [f"list/{i:02}.bin" for i in range(7)] + ["list/sub/x.bin"]
    check(keys == expected, f"paginated listing in key order: {keys}")
    delimited = s3.list_objects_v2(Bucket="conformance", Prefix="list/", Delimiter="/")
    check([p["Prefix"] for p in delimited.get("CommonPrefixes", [])] == ["list/sub/"], "common prefixes")
    check(len(delimited["Contents"]) == 7, "the delimiter hides the sub-folder's keys")

    # Multipart upload, and the high-level transfer that uses it.
    part_size = 5 * 1024 * 1024
    parts_data = [bytes([65 + i]) * part_size for i in range(2)] + [b"tail"]
    upload = s3.create_multipart_upload(Bucket="conformance", Key="big/object.bin")
    parts = []
    for number, data in enumerate(parts_data, start=1):
        part = s3.upload_part(
            Bucket="conformance", Key="big/object.bin", UploadId=upload["UploadId"], PartNumber=number, Body=data
        )
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    listed = s3.list_parts(Bucket="conformance", Key="big/object.bin", UploadId=upload["UploadId"])
    check([p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3], "list_parts shows the uploaded parts")
    s3.complete_multipart_upload(
        Bucket="conformance", Key="big/object.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    whole = s3.get_object(Bucket="conformance", Key="big/object.bin")["Body"].read()
    check(whole == b"".join(parts_data), "a completed multipart upload is the parts in order")
    aborted = s3.create_multipart_upload(Bucket="conformance", Key="big/aborted.bin")
    s3.upload_part(Bucket="conformance", Key="big/aborted.bin", UploadId=aborted["UploadId"], PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket="conformance", Key="big/aborted.bin", UploadId=aborted["UploadId"])
    check(error_code(lambda: s3.head_object(Bucket="conformance", Key="big/aborted.bin"))[1] == 404, "aborted upload leaves nothing")

    # Delete one, delete many; a non-empty bucket is not deleted.
    s3.delete_object(Bucket="conformance", Key="docs/a.txt")
    check(error_code(lambda: s3.get_object(Bucket="conformance", Key="docs/a.txt"))[0] == "NoSuchKey", "deleted")
    code, status = error_code(lambda: s3.delete_bucket(Bucket="conformance"))
    check((code, status) == ("BucketNotEmpty", 409), f"non-empty bucket delete: {code} {status}")
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket="conformance")["Contents"]]
    s3.delete_objects(Bucket="conformance", Delete={"Objects": [{"Key": k} for k in remaining]})
    check(s3.list_objects_v2(Bucket="conformance")["KeyCount"] == 0, "delete_objects removes them all")
    s3.delete_bucket(Bucket="conformance")
    check(error_code(lambda: s3.head_bucket(Bucket="conformance"))[1] == 404, "the empty bucket is deleted")

    print(f"s3 conformance: {checks} checks passed")


if __name__ == "__main__":
    main()
