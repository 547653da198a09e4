//! A response body that is either whole or a stream of server-sent events, so one handler can answer
//! both ways.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http_body::Frame;

/// What respond's routes answer with.
pub enum Body {
    Full(Option<Bytes>),
    Stream(Pin<Box<dyn Stream<Item = Bytes>>>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|next| next.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
}

/// A whole reply as a [`Body`] response.
pub fn full(reply: shared::Reply) -> http::Response<Body> {
    let (parts, body) = reply.into_http().into_parts();
    http::Response::from_parts(parts, Body::Full(body.into_inner()))
}

/// A stream of server-sent events. `extra` headers go with it (CORS for widget keys).
pub fn events(
    stream: impl Stream<Item = Bytes> + 'static,
    extra: Vec<(&'static str, String)>,
) -> http::Response<Body> {
    let mut response = http::Response::new(Body::Stream(Box::pin(stream)));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    for (name, value) in extra {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.append(name, value);
        }
    }
    response
}
