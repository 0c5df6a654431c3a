//! One SSE watcher: replays what the client missed, then relays the
//! feed's events through its filter, reading Redis again after a gap or a
//! lag, and sending `reset` when its history is gone.

use std::{convert::Infallible, sync::Arc};

use axum::response::sse::{Event as SseEvent, KeepAliveStream, Sse};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{Event, EventLog, Replay};

/// An open SSE watch, ready to return from a handler.
pub type WatchResponse = Sse<KeepAliveStream<ReceiverStream<Result<SseEvent, Infallible>>>>;

pub(super) enum Start {
    Replay(u64, Vec<Event>),
    Reset(u64),
    Live(u64),
}

pub(super) struct Watcher<F> {
    pub(super) log: EventLog,
    pub(super) live: broadcast::Receiver<Arc<Event>>,
    pub(super) tx: mpsc::Sender<Result<SseEvent, Infallible>>,
    pub(super) filter: F,
    pub(super) on_delivered: Option<Box<dyn Fn(u64) + Send + Sync>>,
    pub(super) gauge: &'static str,
}

/// Why a watcher stops.
enum Stop {
    Gone,
    Store,
}

impl<F: Fn(&Event) -> bool> Watcher<F> {
    pub(super) async fn run(mut self, start: Start, shutdown: CancellationToken) {
        metrics::gauge!(self.gauge).increment(1.0);
        let _ = self.serve(start, shutdown).await;
        metrics::gauge!(self.gauge).decrement(1.0);
    }

    async fn serve(&mut self, start: Start, shutdown: CancellationToken) -> Result<(), Stop> {
        let mut last = match start {
            Start::Live(current) => current,
            Start::Reset(current) => {
                self.reset(current).await?;
                current
            }
            Start::Replay(after, events) => {
                let last = self.deliver(after, events).await?;
                self.catch_up(last).await?
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.tx.closed() => return Err(Stop::Gone),
                received = self.live.recv() => match received {
                    Ok(event) if event.is_reset() => {
                        self.reset(event.revision).await?;
                        last = event.revision;
                    }
                    Ok(event) if event.revision <= last => {}
                    Ok(event) if event.revision == last + 1 => {
                        last = self.deliver(last, [event.as_ref().clone()]).await?;
                    }
                    // A gap (the feed ran ahead of our replay) or we lagged: read Redis.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        last = self.catch_up(last).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    /// Replay from Redis until up to date; a trimmed gap becomes a reset.
    async fn catch_up(&mut self, mut last: u64) -> Result<u64, Stop> {
        loop {
            match self.log.replay(last).await.map_err(|_| Stop::Store)? {
                Replay::Events(events) if events.is_empty() => return Ok(last),
                Replay::Events(events) => last = self.deliver(last, events).await?,
                Replay::Reset(current) => {
                    self.reset(current).await?;
                    return Ok(current);
                }
            }
        }
    }

    async fn deliver(
        &mut self,
        mut last: u64,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<u64, Stop> {
        for event in events {
            if event.revision <= last {
                continue;
            }
            last = event.revision;
            if (self.filter)(&event) {
                self.tx
                    .send(Ok(event.to_sse()))
                    .await
                    .map_err(|_| Stop::Gone)?;
            }
        }
        if let Some(on_delivered) = &self.on_delivered {
            on_delivered(last);
        }
        Ok(last)
    }

    async fn reset(&mut self, current: u64) -> Result<(), Stop> {
        let event = Event::reset(current).to_sse();
        self.tx.send(Ok(event)).await.map_err(|_| Stop::Gone)
    }
}
