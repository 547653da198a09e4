//! Outbound requests to hosts granted only through a wildcard in `allowed_outbound_hosts`: fetches
//! on a user's behalf (a crawl), which must never reach this machine, its network or a cloud's
//! metadata service.
//!
//! The name is resolved here and every address judged with `shared::net::refusal`; the connection
//! is then made to an address that passed, not to the name again, so an answer that changes between
//! the check and the connect (DNS rebinding) cannot slip through. A refused request fails with
//! `destination-ip-prohibited` before any packet is sent to the refused address. Redirects are
//! not followed here (wasi:http never does): each hop the component follows is a new request and is
//! judged again.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Connecting and the TLS handshake, per address tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From the request sent to the response's head.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The addresses `host` resolves to that a public fetch may connect to; an error naming the
/// refusal when there are none.
async fn public_addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = match tokio::net::lookup_host((bare, port)).await {
        Ok(found) => found.collect(),
        Err(_) => {
            return Err(Error::DnsError {
                rcode: Some("not found".into()),
                info_code: None,
            });
        }
    };
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
        .into_iter()
        .partition(|addr| shared::net::refusal(addr.ip()).is_none());
    if allowed.is_empty() {
        if let Some(addr) = refused.first() {
            tracing::warn!(
                host = bare,
                address = %addr.ip(),
                reason = shared::net::refusal(addr.ip()).unwrap_or_default(),
                "outbound request refused: a wildcard grant reaches public addresses only"
            );
            return Err(Error::DestinationIpProhibited);
        }
        return Err(Error::DestinationNotFound);
    }
    Ok(allowed)
}

fn server_name(host: &str) -> Result<rustls_pki_types::ServerName<'static>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(rustls_pki_types::ServerName::from(ip));
    }
    rustls_pki_types::ServerName::try_from(bare.to_string()).map_err(Error::InvalidDnsNameError)
}

async fn connect(
    addresses: &[SocketAddr],
    host: &str,
    tls: bool,
    timeout: Duration,
) -> Result<Box<dyn Stream>, Error> {
    let mut last = Error::ConnectionRefused;
    for addr in addresses {
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                last = Error::Connect(e);
                continue;
            }
            Err(_) => {
                last = Error::ConnectionTimeout;
                continue;
            }
        };
        if !tls {
            return Ok(Box::new(tcp));
        }
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        return match tokio::time::timeout(timeout, connector.connect(server_name(host)?, tcp)).await
        {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(e)) => Err(Error::Tls(e)),
            Err(_) => Err(Error::ConnectionTimeout),
        };
    }
    Err(last)
}

pub type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Sends `request` to a public address of its host (HTTP/1.1, TLS for https).
pub async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let uri = request.uri().clone();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT)
        .min(CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(FIRST_BYTE_TIMEOUT)
        .min(FIRST_BYTE_TIMEOUT);
    let addresses = public_addresses(&host, port).await?;
    let stream = connect(&addresses, &host, tls, connect_timeout).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::from)?;
    // On the wire the request line carries the path only; the host header names the site.
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    if !request.headers().contains_key(http::header::HOST) {
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let value =
            http::HeaderValue::from_str(&authority).map_err(|_| Error::HttpRequestUriInvalid)?;
        request.headers_mut().insert(http::header::HOST, value);
    }
    let mut connection = Box::pin(connection);
    let send = sender.send_request(request);
    tokio::pin!(send);
    let deadline = tokio::time::sleep(first_byte_timeout);
    tokio::pin!(deadline);
    let mut closed = false;
    let response = loop {
        tokio::select! {
            answer = &mut send => break answer.map_err(Error::from)?,
            driven = &mut connection, if !closed => {
                closed = true;
                driven.map_err(Error::from)?;
            }
            () = &mut deadline => return Err(Error::ConnectionReadTimeout),
        }
    };
    let io: IoFuture = if closed {
        Box::new(async { Ok(()) })
    } else {
        Box::new(async move { connection.await.map_err(Error::from) })
    };
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        io,
    ))
}
