//! Running meetings' snapshots on their way to the database, by group commit: whatever
//! arrived while one write ran goes into the next, one transaction for all of its rooms, and
//! that write starts as soon as the previous one finished. A change is stored one write after
//! it was made, not on a timer. Once a room's snapshot is stored, the SFU is told
//! ([`SfuHandle::saved`]) and sends the news of the changes in it to the meeting's clients:
//! a client is never told of something a `kill -9` would make the meeting forget.
//!
//! A failed write is logged and tried again after `retry`, merged with newer changes; the
//! SFU sends the held news anyway once its wait is up (`--live-save-ms`), so a failing
//! database never hangs a meeting.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::error;
use veche_sfu::SfuHandle;

use crate::store::{LiveChange, Store};

/// The sending side of the writer task.
pub(crate) struct LiveSaver {
    tx: mpsc::UnboundedSender<Write>,
    task: JoinHandle<()>,
}

/// A room's change for the next write.
struct Write {
    room: String,
    change: LiveChange,
    /// The SFU's sequence number of the change, reported back once stored.
    seq: u64,
    /// Told once the write holding this change was tried.
    tried: Option<oneshot::Sender<()>>,
}

/// What the next write holds for one room: its latest change.
struct Pending {
    change: LiveChange,
    seq: u64,
    tried: Vec<oneshot::Sender<()>>,
}

impl LiveSaver {
    /// Starts the writer. Stored snapshots are reported to `sfu`.
    pub(crate) fn start(store: Store, sfu: Option<SfuHandle>, retry: Duration) -> LiveSaver {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_live(store, sfu, rx, retry));
        LiveSaver { tx, task }
    }

    /// Stores `change` of `room` with the next write; `seq` is reported back once stored.
    pub(crate) fn save(&self, room: String, change: LiveChange, seq: u64) {
        let _ = self.tx.send(Write {
            room,
            change,
            seq,
            tried: None,
        });
    }

    /// Stores `change` of `room` with the next write (`seq` is reported back once stored),
    /// and waits until that was tried.
    pub(crate) async fn save_now(&self, room: String, change: LiveChange, seq: u64) {
        let (tried, done) = oneshot::channel();
        let _ = self.tx.send(Write {
            room,
            change,
            seq,
            tried: Some(tried),
        });
        let _ = done.await;
    }

    /// Writes what is pending and stops.
    pub(crate) async fn finish(self) {
        drop(self.tx);
        if let Err(e) = self.task.await {
            error!("the meeting snapshot writer failed: {e}");
        }
    }
}

async fn write_live(
    store: Store,
    sfu: Option<SfuHandle>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    retry: Duration,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut open = true;
    while open || !pending.is_empty() {
        if pending.is_empty() {
            match rx.recv().await {
                Some(w) => merge(&mut pending, w),
                None => break,
            }
        }
        // Everything that came while the last write ran goes into this one.
        loop {
            match rx.try_recv() {
                Ok(w) => merge(&mut pending, w),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let mut batch: Vec<(String, Pending)> = pending.drain().collect();
        let changes: Vec<(String, LiveChange)> = batch
            .iter()
            .map(|(room, p)| (room.clone(), p.change.clone()))
            .collect();
        let result = store.write_live_meetings(&changes).await;
        for (_, p) in &mut batch {
            for tried in p.tried.drain(..) {
                let _ = tried.send(());
            }
        }
        match result {
            Ok(()) => {
                for (room, p) in batch {
                    if let Some(sfu) = &sfu {
                        sfu.saved(room, p.seq);
                    }
                }
            }
            Err(e) => {
                error!(
                    rooms = batch.len(),
                    "saving running meetings failed; trying again: {e}"
                );
                for (room, p) in batch {
                    // Newer changes of a room arrive later and replace this one.
                    pending.insert(room, p);
                }
                if !open {
                    // Shutting down: one more try, then give up.
                    let changes: Vec<_> =
                        pending.drain().map(|(room, p)| (room, p.change)).collect();
                    if let Err(e) = store.write_live_meetings(&changes).await {
                        error!(rooms = changes.len(), "saving running meetings failed: {e}");
                    }
                    return;
                }
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Adds `w` to what the next write holds: the latest change of a room replaces earlier ones.
fn merge(pending: &mut HashMap<String, Pending>, w: Write) {
    let Write {
        room,
        change,
        seq,
        tried,
    } = w;
    let p = pending.entry(room).or_insert_with(|| Pending {
        change: change.clone(),
        seq,
        tried: Vec::new(),
    });
    p.change = change;
    p.seq = p.seq.max(seq);
    p.tried.extend(tried);
}
