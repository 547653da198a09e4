//! The embedded object store: the S3 API on local files, for uploads and original documents.
//!
//! The protocol (request parsing, SigV4 and SigV2 signature checks, streaming `aws-chunked` bodies,
//! XML and error bodies) is the `s3s` crate's; the storage is `s3s-fs`, which writes each object to a
//! temporary file and renames it into place, so a crash never leaves half an object. This module adds
//! what a demanding client expects of S3 on top: a `Content-MD5` that does not match refuses the write
//! and keeps the previous object, and a bucket that still holds objects is not deleted.
//!
//! This crate is one server and nothing else: it knows nothing of wasmtime, manifests, the host or
//! the other embedded services. [`start`] takes a [`Config`] and gives back a running server.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use futures::Stream;
use md5::Digest as _;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput,
    DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, GetBucketLocationInput, GetBucketLocationOutput, GetObjectInput,
    GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput,
    ListBucketsInput, ListBucketsOutput, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input,
    ListObjectsV2Output, ListPartsInput, ListPartsOutput, PutObjectInput, PutObjectOutput,
    StreamingBlob, UploadPartInput, UploadPartOutput,
};
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use embedded::{Credentials, Embedded};

/// The region the embedded store reports; clients must sign for some region, and any is accepted.
pub const REGION: &str = "us-east-1";

/// Where the store keeps its buckets, where it listens, who may sign requests, and which buckets
/// must exist.
#[derive(Debug, Clone)]
pub struct Config {
    /// Buckets are folders under it; created if missing.
    pub dir: PathBuf,
    /// A loopback address (port 0 picks a free port).
    pub addr: std::net::SocketAddr,
    /// Clients sign with access key `credentials.user` and secret key `credentials.secret`.
    pub credentials: Credentials,
    /// Created at start if they do not exist.
    pub buckets: Vec<String>,
}

/// Starts the object store on `config.addr`, keeping buckets as folders under `config.dir`.
pub async fn start(config: Config) -> anyhow::Result<Embedded> {
    let Config {
        dir,
        addr,
        credentials,
        buckets,
    } = config;
    let dir = dir.as_path();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for bucket in buckets {
        let path = dir.join(bucket);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create bucket folder {}", path.display()))?;
    }
    let files = s3s_fs::FileSystem::new(dir)
        .map_err(|e| anyhow::anyhow!("cannot open the object store at {}: {e:?}", dir.display()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(Checked {
        files,
        root: dir.to_path_buf(),
    });
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        credentials.user,
        credentials.secret,
    ));
    let service = builder.build();
    embedded::serve("objectstore", addr, move |request| {
        let service = service.clone();
        async move {
            let request = request.map(s3s::Body::from);
            match service.call(request).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!("object store: request failed: {error:?}");
                    internal_error()
                }
            }
        }
    })
    .await
}

fn internal_error() -> http::Response<s3s::Body> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
                <Message>We encountered an internal error. Please try again.</Message></Error>";
    let mut response = http::Response::new(s3s::Body::from(body.to_string()));
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// `s3s-fs` with the checks it leaves out.
struct Checked {
    files: s3s_fs::FileSystem,
    root: std::path::PathBuf,
}

impl Checked {
    /// S3 answers `NoSuchBucket` before looking for a key; `s3s-fs` would say `NoSuchKey`. Bucket
    /// names reach here validated by `s3s` (no separators, no dots-only names).
    fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.root.join(bucket).is_dir() {
            Ok(())
        } else {
            Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            ))
        }
    }
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked").finish_non_exhaustive()
    }
}

/// Decodes a `Content-MD5` header (base64 of the 16-byte digest).
fn expected_md5(header: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    use base64::Engine as _;
    let Some(value) = header else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not valid base64"))?;
    let digest: [u8; 16] = bytes
        .try_into()
        .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not a 16-byte MD5 digest"))?;
    Ok(Some(digest))
}

/// A body that fails at its end when its MD5 differs from the one the client declared, so the store
/// discards the temporary file instead of renaming it over the previous object.
struct Md5Checked {
    inner: StreamingBlob,
    hasher: md5::Md5,
    expected: [u8; 16],
    mismatched: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the body does not match its Content-MD5")]
struct DigestMismatch;

impl Stream for Md5Checked {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.hasher.update(&bytes);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => {
                let actual: [u8; 16] = this.hasher.finalize_reset().into();
                if actual == this.expected {
                    Poll::Ready(None)
                } else {
                    this.mismatched.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(Box::new(DigestMismatch))))
                }
            }
            other => other,
        }
    }
}

impl ByteStream for Md5Checked {
    fn remaining_length(&self) -> RemainingLength {
        self.inner.remaining_length()
    }
}

/// Wraps `body` in an MD5 check when the client declared one; the flag tells afterwards whether the
/// check failed.
fn checked_body(
    body: Option<StreamingBlob>,
    content_md5: Option<&str>,
) -> S3Result<(Option<StreamingBlob>, Option<Arc<AtomicBool>>)> {
    match (body, expected_md5(content_md5)?) {
        (Some(inner), Some(expected)) => {
            let mismatched = Arc::new(AtomicBool::new(false));
            let body = StreamingBlob::new(Md5Checked {
                inner,
                hasher: md5::Md5::new(),
                expected,
                mismatched: mismatched.clone(),
            });
            Ok((Some(body), Some(mismatched)))
        }
        (body, _) => Ok((body, None)),
    }
}

/// Turns the failure of a write whose body failed its MD5 check into S3's `BadDigest`.
fn digest_error<T>(result: S3Result<T>, mismatched: Option<Arc<AtomicBool>>) -> S3Result<T> {
    match result {
        Err(_) if mismatched.is_some_and(|m| m.load(Ordering::Relaxed)) => Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        )),
        other => other,
    }
}

#[async_trait::async_trait]
impl S3 for Checked {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.files.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let probe = S3Request {
            input: ListObjectsV2Input {
                bucket: req.input.bucket.clone(),
                max_keys: Some(1),
                ..Default::default()
            },
            method: req.method.clone(),
            uri: req.uri.clone(),
            headers: req.headers.clone(),
            extensions: http::Extensions::new(),
            credentials: req.credentials.clone(),
            region: req.region.clone(),
            service: req.service.clone(),
            trailing_headers: None,
        };
        let listed = self.files.list_objects_v2(probe).await?;
        if listed.output.key_count.unwrap_or(0) > 0 {
            return Err(s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            ));
        }
        self.files.delete_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.files.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.files.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.files.get_bucket_location(req).await
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.require_bucket(&req.input.bucket)?;
        let (body, checked) =
            checked_body(req.input.body.take(), req.input.content_md5.as_deref())?;
        req.input.body = body;
        // The store checks the digest itself only after renaming the object into place; the
        // checked body already proved it, before the rename.
        if checked.is_some() {
            req.input.content_md5 = None;
        }
        digest_error(self.files.put_object(req).await, checked)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.require_bucket(&req.input.bucket)?;
        self.files.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.require_bucket(&req.input.bucket)?;
        self.files.head_object(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.require_bucket(&req.input.bucket)?;
        self.files.copy_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.require_bucket(&req.input.bucket)?;
        self.files.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.files.delete_objects(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.files.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.files.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.require_bucket(&req.input.bucket)?;
        self.files.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let (body, checked) =
            checked_body(req.input.body.take(), req.input.content_md5.as_deref())?;
        req.input.body = body;
        digest_error(self.files.upload_part(req).await, checked)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        // s3s-fs lists parts in directory order; S3 lists them by part number.
        let mut listed = self.files.list_parts(req).await?;
        if let Some(parts) = listed.output.parts.as_mut() {
            parts.sort_by_key(|part| part.part_number);
        }
        Ok(listed)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.files.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.files.abort_multipart_upload(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_must_be_a_base64_digest() {
        assert!(expected_md5(None).unwrap().is_none());
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        let digest = expected_md5(Some("1B2M2Y8AsgTpgAmY7PhCfg=="))
            .unwrap()
            .unwrap();
        assert_eq!(digest[0], 0xd4);
        assert!(expected_md5(Some("not base64!")).is_err());
        assert!(expected_md5(Some("AAAA")).is_err());
    }
}
