//! A request body that arrives on an HTTP/2 stream: the connection's task puts the
//! stream's DATA frames in its inbox, and the request's exchange with a server reads them
//! as a hyper body.
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use hyper::body::Frame;

use crate::state::BoxError;

/// A request body: the DATA frames of one stream, as the connection receives them.
pub(crate) struct RecvBody {
    pub(crate) shared: Option<Arc<Mutex<Inbox>>>,
}

#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) chunks: VecDeque<Bytes>,
    pub(crate) ended: bool,
    /// The client reset the stream (or the connection ended) before the body was whole.
    pub(crate) broken: bool,
    /// Bytes taken, not yet given back to the client's window.
    pub(crate) consumed: usize,
    pub(crate) waker: Option<Waker>,
}

#[derive(Debug, thiserror::Error)]
#[error("the client reset the stream before its request body was whole")]
struct BodyBroken;

impl hyper::body::Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(shared) = &self.shared else { return Poll::Ready(None) };
        let mut inbox = shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = inbox.chunks.pop_front() {
            inbox.consumed += c.len();
            return Poll::Ready(Some(Ok(Frame::data(c))));
        }
        if inbox.ended {
            return Poll::Ready(None);
        }
        if inbox.broken {
            return Poll::Ready(Some(Err(BodyBroken.into())));
        }
        inbox.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| {
            let inbox = s.lock().unwrap_or_else(|p| p.into_inner());
            inbox.ended && inbox.chunks.is_empty()
        })
    }
}
