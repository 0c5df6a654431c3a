//! The tail task: follows the stream on a connection of its own
//! (`XREAD BLOCK`), publishes each event to the feed, and broadcasts a
//! `reset` when Redis lost or replaced the data (see the module docs of
//! [`crate::events`]).

use std::{sync::Arc, time::Duration};

use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{Event, EventLog, Head, PAGE, TAIL_BLOCK, fanout::Fanout, feed::Position};

/// The tail task: follow the stream and publish to the feed until shutdown.
pub(super) async fn tail(
    log: EventLog,
    events: broadcast::Sender<Arc<Event>>,
    fanout: Arc<Fanout>,
    position: watch::Sender<Position>,
    shutdown: CancellationToken,
) {
    // What this process knows: `None` until the first read.
    let mut known: Option<Head> = None;
    // The last event published, to check after a reconnect that the server
    // now answering (a promoted replica) has the same history, not only as
    // many revisions.
    let mut last: Option<Arc<Event>> = None;
    let options = StreamReadOptions::default()
        .count(PAGE)
        .block(TAIL_BLOCK.as_millis() as usize);
    while !shutdown.is_cancelled() {
        let mut conn = match log.redis().dedicated(TAIL_BLOCK).await {
            Ok(conn) => conn,
            Err(_) => {
                pause(&shutdown).await;
                continue;
            }
        };
        // (Re)start from the current revision; if Redis came back without
        // the data we followed, follow the new history (a reset).
        let head = match log.head().await {
            Ok(head) => head,
            Err(_) => {
                pause(&shutdown).await;
                continue;
            }
        };
        let diverged = match (&known, &last) {
            (Some(seen), Some(event)) if !seen.lost_to(&head) => {
                match log.read_after(event.revision.saturating_sub(1), 1).await {
                    Ok(found) => found.first() != Some(event.as_ref()),
                    Err(_) => {
                        pause(&shutdown).await;
                        continue;
                    }
                }
            }
            _ => false,
        };
        let mut head = match known.take() {
            Some(seen) if !seen.lost_to(&head) && !diverged => Head {
                revision: seen.revision,
                epoch: head.epoch.or(seen.epoch),
            },
            Some(seen) => {
                // Fewer revisions, another epoch, or (after a failover to a
                // replica that missed the last writes and took new ones
                // since) another event at the revision we last published.
                publish_reset(&log, &events, &fanout, &position, &seen, &head);
                last = None;
                head
            }
            None => {
                position.send_modify(|p| {
                    p.revision = head.revision;
                    p.tailing = true;
                });
                head
            }
        };
        loop {
            let from = format!("{}-0", head.revision);
            // The epoch and the revision ride in the same pipeline as the
            // XREAD and are read right after it returns: every wake (at least
            // once per TAIL_BLOCK) checks for lost data at no extra round trip.
            let mut pipe = redis::pipe();
            pipe.cmd("XREAD")
                .arg(&options)
                .arg("STREAMS")
                .arg(log.stream_key())
                .arg(&from)
                .get(log.revision_key())
                .get(log.epoch_key());
            let read = pipe
                .query_async::<(Option<StreamReadReply>, Option<u64>, Option<String>)>(&mut conn);
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return,
                reply = read => reply,
            };
            let (reply, revision, epoch) = match reply {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(%error, stream = log.stream_key(), "event tail lost redis; reconnecting");
                    break;
                }
            };
            let now = Head {
                revision: revision.unwrap_or(0),
                epoch,
            };
            if head.lost_to(&now) {
                // The events just read (if any) belong to the new history
                // or to the lost one: readers re-list instead.
                publish_reset(&log, &events, &fanout, &position, &head, &now);
                last = None;
                head = now;
                continue;
            }
            if head.epoch.is_none() {
                head.epoch = now.epoch;
            }
            for entry in reply
                .iter()
                .flat_map(|r| r.keys.iter())
                .flat_map(|k| k.ids.iter())
            {
                if let Some(event) = Event::from_stream_id(entry) {
                    head.revision = event.revision;
                    position.send_modify(|p| p.revision = event.revision);
                    let event = Arc::new(event);
                    // SSE watchers first: they are the fan-out whose latency is measured.
                    fanout.publish(&event);
                    last = Some(event.clone());
                    // No receivers is fine: nobody is watching.
                    let _ = events.send(event);
                }
            }
        }
        known = Some(head);
        pause(&shutdown).await;
    }
}

/// Tell every reader that Redis lost or replaced the data (`seen` → `now`).
fn publish_reset(
    log: &EventLog,
    events: &broadcast::Sender<Arc<Event>>,
    fanout: &Fanout,
    position: &watch::Sender<Position>,
    seen: &Head,
    now: &Head,
) {
    tracing::warn!(
        seen_revision = seen.revision,
        revision = now.revision,
        seen_epoch = seen.epoch.as_deref().unwrap_or(""),
        epoch = now.epoch.as_deref().unwrap_or(""),
        stream = log.stream_key(),
        "redis lost or replaced its data (epoch or revision changed); readers reload"
    );
    position.send_modify(|p| {
        p.revision = now.revision;
        p.resets += 1;
    });
    let _ = events.send(Arc::new(Event::reset(now.revision)));
    fanout.reset(now.revision);
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
}
