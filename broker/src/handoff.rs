//! Moving a client connection to the core that owns the partitions it uses.
//!
//! The kernel spreads connections over cores (SO_REUSEPORT) without knowing which partitions
//! they will touch, so a producer or consumer of one partition lands on a core that does not
//! own it half the time on two cores, and every one of its requests then crosses the mesh and
//! back. On a machine whose clients share the broker's CPUs, that hop is the cost that
//! matters: each request wakes a second executor thread and waits for it to get a CPU, twice.
//! Measured on the 2-CPU test machine (one partition, closed loop, 100 B records): 5.3-6.3M
//! records/s when the connection landed on the owning core, 1.9-2.4M/s when it did not
//! (`docs/benchmarks.md`, "Connections follow their partitions").
//!
//! So each connection tallies the owning core of every partition its Produce and Fetch
//! requests name ([`Affinity`]); when one other core owns nearly all of a window of them, the
//! connection moves there between two requests: its socket (a duplicate descriptor) and the
//! bytes it has read but not yet handled go to that core over the mesh ([`Handoff`]), which
//! serves it from then on. Requests stay in order: the old core has answered every request it
//! read before it asks, and the new core starts with the unread rest. A connection whose
//! partitions are spread over cores stays where it is: no core is better for it.

use std::cell::Cell;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytes::BytesMut;

/// Partition ops a connection's requests name before its core is reconsidered: enough that a
/// consumer's or producer's pattern shows, few enough that a busy connection moves within its
/// first requests.
pub const WINDOW_OPS: u32 = 64;

/// Eighths of a window one other core must own for the connection to move there: a client
/// split over cores stays put.
pub const MOVE_SHARE_EIGHTHS: u32 = 7;

/// Least time between two moves of one connection: a client whose partitions alternate
/// between cores does not bounce its connection back and forth at every window.
pub const MOVE_INTERVAL: Duration = Duration::from_secs(1);

/// Most moves in a connection's life: past this, a pattern that keeps changing is served
/// wherever it stands.
pub const MOVES_MAX: u32 = 16;

/// Where a connection's partitions live, over its current window of ops.
#[derive(Debug)]
pub struct Affinity {
    /// Ops of the window by owning core, one slot per core of the broker.
    counts: Box<[Cell<u32>]>,
    /// Ops in the window.
    noted: Cell<u32>,
    /// Moves so far and when the last one was.
    moves: Cell<u32>,
    moved_at: Cell<Option<Instant>>,
}

impl Affinity {
    /// A tally for a new connection of a broker with `cores` cores.
    pub fn new(cores: usize) -> Affinity {
        assert!(cores > 0);
        Affinity {
            counts: (0..cores).map(|_| Cell::new(0)).collect(),
            noted: Cell::new(0),
            moves: Cell::new(0),
            moved_at: Cell::new(None),
        }
    }

    /// A tally for a connection that has already moved `moves` times, the last at `moved_at`.
    pub fn carried(cores: usize, moves: u32, moved_at: Option<Instant>) -> Affinity {
        let affinity = Affinity::new(cores);
        affinity.moves.set(moves);
        affinity.moved_at.set(moved_at);
        affinity
    }

    /// Counts one partition op served by `core`.
    pub fn note(&self, core: usize) {
        let count = &self.counts[core];
        count.set(count.get().saturating_add(1));
        self.noted.set(self.noted.get().saturating_add(1));
    }

    /// The core the connection should move to now, if any, for a connection on core `here`;
    /// starts a new window once the current one is full, whatever the answer.
    pub fn move_due(&self, here: usize, now: Instant) -> Option<usize> {
        let noted = self.noted.get();
        if noted < WINDOW_OPS {
            return None;
        }
        let (best, count) = self
            .counts
            .iter()
            .map(Cell::get)
            .enumerate()
            .max_by_key(|&(_, count)| count)
            .expect("the tally has cores");
        for count in &self.counts {
            count.set(0);
        }
        self.noted.set(0);
        let dominant = u64::from(count) * 8 >= u64::from(noted) * u64::from(MOVE_SHARE_EIGHTHS);
        let rested = self
            .moved_at
            .get()
            .is_none_or(|at| now.saturating_duration_since(at) >= MOVE_INTERVAL);
        (best != here && dominant && rested && self.moves.get() < MOVES_MAX).then_some(best)
    }

    /// Moves made so far.
    pub fn moves(&self) -> u32 {
        self.moves.get()
    }
}

/// A connection on its way to another core.
#[derive(Debug)]
pub struct Handoff {
    /// A duplicate of the connection's socket: the old core closes its own once the new core
    /// has taken this one, and the socket lives on.
    pub socket: OwnedFd,
    /// Bytes read from the socket and not yet handled, first among them the next request.
    pub unread: BytesMut,
    /// The client's address, as the connection saw it when accepted.
    pub peer: Option<IpAddr>,
    /// Moves of this connection, this one included, and when this one happened.
    pub moves: u32,
    pub moved_at: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noted(affinity: &Affinity, core: usize, ops: u32) {
        for _ in 0..ops {
            affinity.note(core);
        }
    }

    #[test]
    fn a_connection_whose_partitions_are_on_another_core_moves_there() {
        let affinity = Affinity::new(3);
        let now = Instant::now();
        noted(&affinity, 1, WINDOW_OPS - 1);
        assert_eq!(
            affinity.move_due(0, now),
            None,
            "the window is not full yet"
        );
        noted(&affinity, 1, 1);
        assert_eq!(affinity.move_due(0, now), Some(1));
    }

    #[test]
    fn a_connection_on_its_partitions_core_stays() {
        let affinity = Affinity::new(3);
        noted(&affinity, 0, WINDOW_OPS);
        assert_eq!(affinity.move_due(0, Instant::now()), None);
    }

    #[test]
    fn a_connection_split_over_cores_stays() {
        let affinity = Affinity::new(3);
        noted(&affinity, 1, WINDOW_OPS * 3 / 4);
        noted(&affinity, 0, WINDOW_OPS / 4);
        assert_eq!(affinity.move_due(0, Instant::now()), None);
        // Exactly the share moves.
        noted(&affinity, 1, WINDOW_OPS * MOVE_SHARE_EIGHTHS / 8);
        noted(
            &affinity,
            0,
            WINDOW_OPS - WINDOW_OPS * MOVE_SHARE_EIGHTHS / 8,
        );
        assert_eq!(affinity.move_due(0, Instant::now()), Some(1));
    }

    #[test]
    fn each_window_is_judged_on_its_own() {
        let affinity = Affinity::new(3);
        let now = Instant::now();
        noted(&affinity, 0, WINDOW_OPS);
        assert_eq!(affinity.move_due(0, now), None);
        noted(&affinity, 2, WINDOW_OPS);
        assert_eq!(
            affinity.move_due(0, now),
            Some(2),
            "the first window is forgotten"
        );
    }

    #[test]
    fn a_moved_connection_rests_before_it_moves_again_and_stops_after_the_most_moves() {
        let moved_at = Instant::now();
        let affinity = Affinity::carried(3, 1, Some(moved_at));
        noted(&affinity, 0, WINDOW_OPS);
        assert_eq!(affinity.move_due(1, moved_at), None, "moved a moment ago");
        noted(&affinity, 0, WINDOW_OPS);
        assert_eq!(affinity.move_due(1, moved_at + MOVE_INTERVAL), Some(0));

        let tired = Affinity::carried(3, MOVES_MAX, Some(moved_at));
        noted(&tired, 0, WINDOW_OPS);
        assert_eq!(tired.move_due(1, moved_at + MOVE_INTERVAL * 10), None);
    }
}
