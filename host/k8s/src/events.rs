//! Recording the Events [`crate::diff`] decides, through kube-runtime's
//! [`Recorder`] (`events.k8s.io/v1`; a repeat of the same reason on the
//! same Service and related object within minutes becomes a count on the
//! first Event, as kube-runtime does).
//!
//! Events never hold up allocation: the writer hands them to a task of
//! their own through a bounded queue and goes on. A full queue drops
//! Events; a failure to record is logged once (a warning), then quietly
//! until recording works again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use herald_core::ServiceRef;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::diff::{Related, ServiceEvent};
use crate::error::classify;

/// The controller's name in Events (`reportingController`).
pub const REPORTER: &str = "herald-controller";
/// How many Events may wait to be recorded before new ones are dropped.
const QUEUE: usize = 4096;
/// The API server's limit on an Event's note, in bytes.
const NOTE_LIMIT: usize = 1024;

/// A handle to the recording task.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<(ObjectReference, ServiceEvent)>,
    /// Whether an Event was dropped since the queue last took one.
    dropping: Arc<AtomicBool>,
}

impl Events {
    /// Starts the recording task on the current runtime; it ends when the
    /// last handle is dropped.
    pub fn start(client: &Client) -> Events {
        let (tx, mut rx) = mpsc::channel::<(ObjectReference, ServiceEvent)>(QUEUE);
        let recorder = Recorder::new(client.clone(), Reporter::from(REPORTER));
        tokio::spawn(async move {
            let mut failing = false;
            while let Some((regarding, event)) = rx.recv().await {
                let result = recorder.publish(&event_of(&event), &regarding).await;
                match result {
                    Ok(()) if failing => {
                        tracing::info!("recording Events again");
                        failing = false;
                    }
                    Ok(()) => {}
                    // The Service's namespace is being deleted: nobody is
                    // left to read its Events.
                    Err(kube::Error::Api(s)) if s.message.contains("being terminated") => {
                        tracing::debug!(reason = event.reason, "{}", s.message);
                    }
                    Err(e) => {
                        let e = classify("create", "events.events.k8s.io", e);
                        if failing {
                            tracing::debug!(reason = event.reason, "{e}");
                        } else {
                            tracing::warn!(reason = event.reason, "Events are not recorded: {e}");
                            failing = true;
                        }
                    }
                }
            }
        });
        Events {
            tx,
            dropping: Arc::default(),
        }
    }

    /// Queues `events` on the Service `regarding`; drops them when the
    /// queue is full.
    pub fn record(&self, regarding: &ObjectReference, events: &[ServiceEvent]) {
        for event in events {
            match self.tx.try_send((regarding.clone(), event.clone())) {
                Ok(()) => self.dropping.store(false, Ordering::Relaxed),
                Err(_) if self.dropping.swap(true, Ordering::Relaxed) => {
                    tracing::debug!(reason = event.reason, "Event dropped");
                }
                Err(_) => {
                    tracing::warn!(
                        reason = event.reason,
                        "Events are dropped: {QUEUE} wait to be recorded"
                    );
                }
            }
        }
    }
}

/// kube-runtime's Event of a [`ServiceEvent`].
fn event_of(event: &ServiceEvent) -> Event {
    Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.clone(),
        note: Some(truncate(&event.note, NOTE_LIMIT)),
        action: event.action.to_owned(),
        secondary: event.related.as_ref().map(reference),
    }
}

/// The reference of an Event's related object.
fn reference(related: &Related) -> ObjectReference {
    match related {
        Related::Record(name) => ObjectReference {
            api_version: Some(herald_api::API_VERSION.to_owned()),
            kind: Some("IPAllocation".to_owned()),
            name: Some(name.clone()),
            ..ObjectReference::default()
        },
        Related::Service(ServiceRef { namespace, name }) => ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Service".to_owned()),
            namespace: Some(namespace.clone()),
            name: Some(name.clone()),
            ..ObjectReference::default()
        },
    }
}

/// `text` cut to at most `limit` bytes at a character boundary, with `…`
/// when cut.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let ellipsis = '…';
    let mut end = limit - ellipsis.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_to_the_api_limit_on_a_character_boundary() {
        let text = "é".repeat(600);
        let cut = truncate(&text, NOTE_LIMIT);
        assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", NOTE_LIMIT), "short");
    }

    #[test]
    fn the_related_object_is_the_record_or_the_other_service() {
        let record = reference(&Related::Record("198-51-100-8".into()));
        assert_eq!(record.kind.as_deref(), Some("IPAllocation"));
        assert_eq!(record.api_version.as_deref(), Some("herald.dev/v1alpha1"));
        assert_eq!(record.namespace, None);
        let other = reference(&Related::Service(ServiceRef::new("shop", "a")));
        assert_eq!(
            (other.kind.as_deref(), other.namespace.as_deref()),
            (Some("Service"), Some("shop"))
        );
        let warning = event_of(&ServiceEvent {
            warning: true,
            action: "Allocate",
            reason: "PoolExhausted".into(),
            note: "full".into(),
            related: None,
        });
        assert_eq!(warning.type_, EventType::Warning);
        assert_eq!(warning.reason, "PoolExhausted");
    }
}
