//! The fan-out's shared preparation: sinks whose preparers make the same items prepare each
//! event once between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tower::Service;

use super::{FanOut, Sharing, sharing_plan};
use crate::EventData;
use crate::ack::DestinationOutcome;
use crate::component::{Prepare, Prepared};
use crate::event::{Event, RequestContext};
use crate::id::ComponentId;
use crate::queue::{BufferConfig, QueueRx, Queued, SinkInput, channel};

/// An item: the preparer's kind times 1000 plus the event's `n`; or, for `n` < 0, an outcome.
type Item = Result<i64, DestinationOutcome>;

/// Prepares events into [`Item`]s, counting its calls; preparers of one `kind` make the same
/// items.
struct Counting {
    kind: u8,
    calls: Arc<AtomicUsize>,
}

impl Prepare for Counting {
    fn prepare(&self, event: &Event) -> Prepared {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let n = event.data.get("n").and_then(Value::as_i64).unwrap_or(0);
        if n < 0 {
            return Prepared::new(Err::<i64, _>(DestinationOutcome::skipped("negative")));
        }
        Prepared::new(Ok::<i64, DestinationOutcome>(
            i64::from(self.kind) * 1000 + n,
        ))
    }

    fn same_items_as(&self, other: &dyn Prepare) -> bool {
        other
            .downcast_ref::<Self>()
            .is_some_and(|other| other.kind == self.kind)
    }

    fn copy(&self, prepared: &mut Prepared) -> Option<Prepared> {
        let item = *prepared.downcast_ref::<Item>()?.as_ref().ok()?;
        Some(Prepared::new(Ok::<i64, DestinationOutcome>(item)))
    }
}

/// A sink's queue whose items are prepared by a [`Counting`] of `kind` (none: not prepared).
fn sink(name: &str, kind: Option<u8>, calls: &Arc<AtomicUsize>) -> (SinkInput, QueueRx) {
    sink_with(name, kind, calls, &BufferConfig::default())
}

/// [`sink`] with a buffer of its own.
fn sink_with(
    name: &str,
    kind: Option<u8>,
    calls: &Arc<AtomicUsize>,
    buffer: &BufferConfig,
) -> (SinkInput, QueueRx) {
    let (mut input, rx, _) = channel(ComponentId::parse(name).unwrap(), buffer).unwrap();
    input.prepare_with(kind.map(|kind| {
        Arc::new(Counting {
            kind,
            calls: calls.clone(),
        }) as Arc<dyn Prepare>
    }));
    (input, rx)
}

fn event(n: i64) -> Event {
    let mut data = EventData::new();
    data.insert("n", Value::from(n));
    Event::new(data, Arc::new(RequestContext::detached()))
}

/// What waits in a queue: each prepared item's number (or `None` for an outcome), or `-1000`
/// for an event queued as it is.
fn items(rx: &mut QueueRx) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    rx.take_waiting(&mut out, usize::MAX);
    out.into_iter()
        .map(|queued| match queued.event {
            Queued::Event(_) => Some(-1000),
            Queued::Prepared(prepared) => prepared.downcast::<Item>().ok().and_then(Result::ok),
        })
        .collect()
}

#[test]
fn sinks_with_the_same_items_form_a_group_and_the_last_of_it_takes_the_original() {
    let calls = Arc::new(AtomicUsize::new(0));
    let sinks: Vec<SinkInput> = [
        ("console/a", Some(1)),
        ("console/b", Some(2)),
        ("console/c", None),
        ("console/d", Some(1)),
        ("console/e", Some(1)),
    ]
    .into_iter()
    .map(|(name, kind)| sink(name, kind, &calls).0)
    .collect();
    let (plan, groups) = sharing_plan(&sinks);
    assert_eq!(groups, 1);
    let shared = |more| Sharing::Shared { group: 0, more };
    assert_eq!(
        plan,
        [
            shared(true),
            Sharing::Alone,
            Sharing::Alone,
            shared(true),
            shared(false)
        ]
    );
}

/// A fan-out to sinks prepared by [`Counting`]s, their queues, and the count of preparations.
struct Setup {
    fan_out: FanOut,
    queues: Vec<QueueRx>,
    calls: Arc<AtomicUsize>,
}

impl Setup {
    /// Sinks of these names and kinds, with default buffers.
    fn new(sinks: &[(&str, Option<u8>)]) -> Self {
        let buffer = BufferConfig::default();
        let sinks: Vec<_> = sinks
            .iter()
            .map(|&(name, kind)| (name, kind, &buffer))
            .collect();
        Self::with_buffers(&sinks)
    }

    /// Sinks of these names, kinds and buffers.
    fn with_buffers(sinks: &[(&str, Option<u8>, &BufferConfig)]) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let (inputs, queues) = sinks
            .iter()
            .map(|&(name, kind, buffer)| sink_with(name, kind, &calls, buffer))
            .unzip();
        Self {
            fan_out: FanOut::new(inputs),
            queues,
            calls,
        }
    }

    async fn send(&mut self, n: i64) {
        self.fan_out.call(event(n)).await.unwrap();
    }

    /// Preparations so far.
    fn prepared(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// What waits in each queue (see [`items`]).
    fn waiting(&mut self) -> Vec<Vec<Option<i64>>> {
        self.queues.iter_mut().map(items).collect()
    }
}

#[tokio::test]
async fn a_group_prepares_each_event_once_and_each_sink_gets_its_item() {
    let mut setup = Setup::new(&[
        ("spotify/a", Some(7)),
        ("console", None),
        ("spotify/b", Some(7)),
        ("spotify/c", Some(7)),
        ("other", Some(8)),
    ]);
    for n in [1, 2] {
        setup.send(n).await;
    }
    // Per event: one preparation for the group of three, one for `other`.
    assert_eq!(setup.prepared(), 4);
    assert_eq!(
        setup.waiting(),
        [
            vec![Some(7001), Some(7002)],
            vec![Some(-1000), Some(-1000)],
            vec![Some(7001), Some(7002)],
            vec![Some(7001), Some(7002)],
            vec![Some(8001), Some(8002)],
        ]
    );
}

#[tokio::test]
async fn interleaved_groups_each_pass_on_their_own_item() {
    let mut setup = Setup::new(&[
        ("spotify/a1", Some(1)),
        ("spotify/b1", Some(2)),
        ("spotify/a2", Some(1)),
        ("spotify/b2", Some(2)),
    ]);
    assert_eq!(setup.fan_out.groups, 2);
    setup.send(5).await;
    assert_eq!(setup.prepared(), 2);
    assert_eq!(
        setup.waiting(),
        [
            vec![Some(1005)],
            vec![Some(2005)],
            vec![Some(1005)],
            vec![Some(2005)]
        ]
    );
}

#[tokio::test]
async fn a_full_queue_in_a_group_drops_its_event_and_the_others_still_get_theirs() {
    let one = BufferConfig {
        max_events: 1,
        when_full: crate::queue::WhenFull::DropNewest,
        ..BufferConfig::default()
    };
    let roomy = BufferConfig::default();
    // The group's first and last sinks hold one event: full after the first.
    let mut setup = Setup::with_buffers(&[
        ("spotify/a", Some(7), &one),
        ("spotify/b", Some(7), &roomy),
        ("spotify/c", Some(7), &one),
    ]);
    setup.send(1).await;
    setup.send(2).await;
    // One preparation per event: the second one by the middle sink, the only one with room.
    assert_eq!(setup.prepared(), 2);
    assert_eq!(
        setup.waiting(),
        [
            vec![Some(7001)],
            vec![Some(7001), Some(7002)],
            vec![Some(7001)]
        ]
    );
}

#[tokio::test]
async fn an_item_that_is_not_copied_is_prepared_by_each_sink_of_the_group() {
    let mut setup = Setup::new(&[
        ("spotify/a", Some(7)),
        ("spotify/b", Some(7)),
        ("spotify/c", Some(7)),
    ]);
    setup.send(-1).await;
    assert_eq!(setup.prepared(), 3);
    assert_eq!(setup.waiting(), [[None], [None], [None]]);
}
