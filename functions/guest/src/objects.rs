//! The object store over S3 (the embedded store, S3, R2, MinIO, Garage) through the `object_store`
//! crate, inside the component: its HTTP goes through Spin's outbound client and its signing through
//! sha2/hmac, and it does not retry (a failed write fails the request, which the client repeats).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt as _;
use hmac::{KeyInit, Mac};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    CryptoProvider, DigestAlgorithm, DigestContext, HmacContext, HttpClient, HttpConnector,
    HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService, Signer, SigningAlgorithm,
};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig};
use sha2::{Digest, Sha256};
use shared::ApiError;

/// An S3 bucket.
#[derive(Debug)]
pub struct Objects {
    store: AmazonS3,
}

fn unavailable(what: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("object store {what}: {detail}"))
}

impl Objects {
    pub fn new(
        endpoint: &str,
        region: &str,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Result<Self, ApiError> {
        let store = AmazonS3Builder::new()
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_allow_http(true)
            .with_region(region)
            .with_bucket_name(bucket)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_virtual_hosted_style_request(false)
            .with_http_connector(SpinConnector)
            .with_crypto_provider(Arc::new(RustCrypto))
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| unavailable("configuration", e))?;
        Ok(Self { store })
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ApiError> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| unavailable("put", e))
    }

    /// An object's bytes, or `None`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ApiError> {
        match self.store.get(&Path::from(key)).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|e| unavailable("get", e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable("get", e)),
        }
    }

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, ApiError> {
        let keys: Vec<Path> = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| unavailable("list", e))?;
        for key in &keys {
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(unavailable("delete", e)),
            }
        }
        Ok(keys.len())
    }

    /// The keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        self.store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| unavailable("list", e))
    }
}

/// `object_store`'s HTTP through Spin's outbound HTTP.
#[derive(Debug, Clone, Copy)]
struct SpinConnector;

impl HttpConnector for SpinConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(SpinHttp))
    }
}

#[derive(Debug, Clone, Copy)]
struct SpinHttp;

#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

#[async_trait::async_trait]
impl HttpService for SpinHttp {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Request, Failure(e.to_string())))?
            .to_bytes();
        // `outbound::send` declares the length itself, and WASI HTTP refuses a caller's `host`.
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter(|(n, _)| *n != http::header::CONTENT_LENGTH && *n != http::header::HOST)
            .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let url = parts.uri.to_string();
        let method = parts.method.to_string();
        let answer = crate::send_send(async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            crate::outbound::send(&method, &url, &headers, body).await
        })
        .await
        .map_err(|e| HttpError::new(HttpErrorKind::Connect, Failure(e)))?;
        let mut response = http::Response::builder().status(answer.status);
        for (name, value) in &answer.headers {
            response = response.header(name, value);
        }
        response
            .body(object_store::client::HttpResponseBody::from(answer.body))
            .map_err(|e| HttpError::new(HttpErrorKind::Unknown, Failure(e.to_string())))
    }
}

/// SHA-256 and HMAC-SHA256 from RustCrypto, which build for wasm32-wasip2.
#[derive(Debug, Clone, Copy)]
struct RustCrypto;

struct Sha256Context(Sha256, Vec<u8>);

impl DigestContext for Sha256Context {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        self.1 = std::mem::take(&mut self.0).finalize().to_vec();
        Ok(&self.1)
    }
}

struct HmacSha256(Option<hmac::Hmac<Sha256>>, Vec<u8>);

impl HmacContext for HmacSha256 {
    fn update(&mut self, data: &[u8]) {
        if let Some(mac) = &mut self.0 {
            mac.update(data);
        }
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        if let Some(mac) = self.0.take() {
            self.1 = mac.finalize().into_bytes().to_vec();
        }
        Ok(&self.1)
    }
}

impl CryptoProvider for RustCrypto {
    fn digest(&self, algorithm: DigestAlgorithm) -> object_store::Result<Box<dyn DigestContext>> {
        match algorithm {
            DigestAlgorithm::Sha256 => Ok(Box::new(Sha256Context(Sha256::new(), Vec::new()))),
            _ => Err(object_store::Error::NotImplemented {
                operation: "digest".into(),
                implementer: "edgerag".into(),
            }),
        }
    }

    fn hmac(
        &self,
        algorithm: DigestAlgorithm,
        secret: &[u8],
    ) -> object_store::Result<Box<dyn HmacContext>> {
        match algorithm {
            DigestAlgorithm::Sha256 => Ok(Box::new(HmacSha256(
                Some(hmac::Hmac::<Sha256>::new_from_slice(secret).map_err(|e| {
                    object_store::Error::Generic {
                        store: "S3",
                        source: Box::new(Failure(e.to_string())),
                    }
                })?),
                Vec::new(),
            ))),
            _ => Err(object_store::Error::NotImplemented {
                operation: "hmac".into(),
                implementer: "edgerag".into(),
            }),
        }
    }

    fn sign(
        &self,
        _algorithm: SigningAlgorithm,
        _pem: &[u8],
    ) -> object_store::Result<Box<dyn Signer>> {
        Err(object_store::Error::NotImplemented {
            operation: "sign".into(),
            implementer: "edgerag (S3 needs no key signing)".into(),
        })
    }
}
