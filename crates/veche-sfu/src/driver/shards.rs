//! Which shard a connection's commands go to.
//!
//! A room lives on one shard, chosen by a hash of its name, so a connection belongs where its
//! first join points. Until then the [`super::SfuHandle`] holds it ([`Route::Unjoined`]) and
//! answers anything but a join itself. A connection whose join failed (a bad name, say) and
//! that joins again naming a room of another shard is handed over by its shard to the other
//! one, which then keeps forwarding the connection's later commands: every command still
//! passes the same channels in the same order, so none can overtake the hand-over.

use std::collections::HashMap;

use tokio::sync::mpsc;
use veche_proto::{ClientMessage, ParticipantId, ServerMessage};

use super::Command;
use crate::core::Sfu;

/// Where the handle sends a connection's commands.
pub(super) enum Route {
    /// No join yet: the handle holds the connection's sender.
    Unjoined(mpsc::Sender<ServerMessage>),
    /// This shard has (or forwards) the connection.
    Shard(usize),
}

/// The shard of a room: FNV-1a of its name. Fixed for the process's life, which is all that
/// matters (every join to a room must land on the same shard); not secret, so a client that
/// wants to can crowd one shard, as it could by joining one big room.
pub(super) fn shard_of(room: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// One shard's way to the others, for hand-overs.
pub(super) struct ShardLinks {
    me: usize,
    /// Weak, so the shards' channels still close (and the shards stop) when every
    /// [`super::SfuHandle`] is gone.
    peers: Vec<mpsc::WeakUnboundedSender<Command>>,
    /// Connections handed to another shard: their later commands follow them there.
    moved: HashMap<ParticipantId, usize>,
}

impl ShardLinks {
    pub(super) fn new<'a>(
        senders: impl Iterator<Item = &'a mpsc::UnboundedSender<Command>>,
    ) -> ShardLinks {
        ShardLinks {
            me: 0,
            peers: senders.map(|s| s.downgrade()).collect(),
            moved: HashMap::new(),
        }
    }

    pub(super) fn for_shard(&self, me: usize) -> ShardLinks {
        ShardLinks {
            me,
            peers: self.peers.clone(),
            moved: HashMap::new(),
        }
    }

    /// Returns `cmd` if this shard should handle it, or `None` after passing it on: a
    /// connection handed over earlier, or a join to another shard's room from a connection
    /// this shard's core has not seated (in a room or its waiting room) — a seated one gets
    /// the core's "already joined".
    pub(super) fn hand_over(
        &mut self,
        cmd: Command,
        sfu: &Sfu,
        connections: &mut HashMap<ParticipantId, mpsc::Sender<ServerMessage>>,
    ) -> Option<Command> {
        let (id, room) = match &cmd {
            Command::Message(id, ClientMessage::Join { room, .. }) => (*id, Some(room.as_str())),
            Command::Join(id, request) => (*id, Some(request.room.as_str())),
            Command::Message(id, _) | Command::Disconnect(id) => (*id, None),
            Command::Connect(id, _) => {
                // Handed back here (a second retry): what follows is ours again.
                self.moved.remove(id);
                return Some(cmd);
            }
            // Sent to the room's shard by the handle; rooms never move.
            Command::Control(_)
            | Command::Live(..)
            | Command::Restore(_)
            | Command::Saved { .. }
            | Command::Shutdown => {
                return Some(cmd);
            }
        };
        if let Some(&to) = self.moved.get(&id) {
            if matches!(cmd, Command::Disconnect(_)) {
                self.moved.remove(&id);
            }
            self.send(to, cmd);
            return None;
        }
        let Some(room) = room else {
            return Some(cmd);
        };
        let to = shard_of(room, self.peers.len());
        if to == self.me || sfu.has_participant(id) {
            return Some(cmd);
        }
        let Some(tx) = connections.remove(&id) else {
            // Not a connection of ours (closed already): the driver ignores it.
            return Some(cmd);
        };
        self.send(to, Command::Connect(id, tx));
        self.send(to, cmd);
        self.moved.insert(id, to);
        None
    }

    fn send(&self, to: usize, cmd: Command) {
        // Gone only while the SFU shuts down; the command is moot then.
        if let Some(tx) = self.peers.get(to).and_then(|p| p.upgrade()) {
            let _ = tx.send(cmd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_spread_over_shards_and_stay_put() {
        let mut seen = [0usize; 4];
        for i in 0..400 {
            let room = format!("room-{i}");
            let s = shard_of(&room, 4);
            assert_eq!(s, shard_of(&room, 4));
            seen[s] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "spread: {seen:?}");
        assert_eq!(shard_of("any", 1), 0);
        assert_eq!(shard_of("any", 0), 0);
    }
}
