//! What walstream knows about its guard read transaction, and so whether a WAL restart seen at
//! the next sync can have lost anything (see "The guard read transaction" in
//! `docs/ARCHITECTURE.md`).
//!
//! Whether a guard is held at this moment is [`crate::sqlite::conn::DbConn::has_guard`]. What
//! this type adds is *since when*: a holding of the guard is numbered (its epoch) and a new
//! number starts whenever the guard is taken where none was held, released, or may have been
//! lost. The proof that a WAL restart lost nothing rests on one holding that began before the
//! scan that set the position, so a claim made under an older number is worth nothing.

/// What is known about the position and the end of its WAL generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Knowledge {
    /// Nothing (after start-up, [`GuardState::closed`], losing the guard, or an emergency
    /// TRUNCATE). A WAL restart seen next means a full snapshot.
    Unknown,
    /// The guard has been held without a break since epoch `since`, which began before the scan
    /// that reached the position. SQLite cannot restart the WAL while a reader holds a read mark
    /// above 0, and a reader can only be on mark 0 when every frame was copied; so while the same
    /// holding lasts, any restart seen later happened after the position was the generation's
    /// end. Valid only while the epoch is still `since`.
    Covered { since: u64 },
    /// The guard was let go while another connection (the app's blocking checkpoint, or
    /// walstream's own restart) held the write lock, right after a scan to the end: nobody could
    /// commit in between. Holds across later epochs until a scan sets the position again; the
    /// caller must still check that no valid old-generation frame follows the position (a
    /// writer-initiated restart leaves old frames in place).
    ReleasedUnderWriteLock,
}

/// Why a WAL restart since the position provably lost nothing (see [`GuardState::proof`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proof {
    /// [`Knowledge::Covered`] in the current epoch.
    Guarded,
    /// [`Knowledge::ReleasedUnderWriteLock`].
    Released,
}

/// The guard's history as far as the WAL-restart proof needs it. Transitions are the methods;
/// the caller makes the matching call on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GuardState {
    /// Number of the current holding of the guard (or of the gap since the last one).
    epoch: u64,
    knowledge: Knowledge,
}

/// Taken before a scan: which holding of the guard the scan ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ScanTicket(u64);

impl GuardState {
    /// Start-up: nothing known.
    pub(super) fn new() -> GuardState {
        GuardState {
            epoch: 0,
            knowledge: Knowledge::Unknown,
        }
    }

    /// The guard was taken where none was held: a new holding. A [`Knowledge::Covered`] claim of
    /// an earlier holding no longer counts (the WAL may have restarted in the gap).
    pub(super) fn taken(&mut self) {
        self.epoch += 1;
    }

    /// Renewing the guard failed: it may be lost, so a new epoch starts (a
    /// [`Knowledge::Covered`] claim no longer counts; the next sync makes a new one).
    pub(super) fn maybe_lost(&mut self) {
        self.epoch += 1;
    }

    /// The connections were closed (shutdown, idle, database replaced or missing): nothing is
    /// known any more.
    pub(super) fn closed(&mut self) {
        self.epoch += 1;
        self.knowledge = Knowledge::Unknown;
    }

    /// The guard was let go while others may commit (before an emergency TRUNCATE checkpoint):
    /// nothing is known any more.
    pub(super) fn released(&mut self) {
        self.closed();
    }

    /// The guard was let go while another connection held the write lock, right after a scan to
    /// the end of the committed WAL (the caller's obligation: the scan covered every committed
    /// frame, and the write lock was held from before that scan until after the release).
    pub(super) fn released_under_write_lock(&mut self) {
        self.epoch += 1;
        self.knowledge = Knowledge::ReleasedUnderWriteLock;
    }

    /// Before a scan, with the guard held: remembers the holding it runs under.
    pub(super) fn scan_ticket(&self) -> ScanTicket {
        ScanTicket(self.epoch)
    }

    /// After a scan that set the position: if the guard is still held (`guard_held`) and no new
    /// epoch began since `ticket`, the position is covered by this holding.
    pub(super) fn scan_reached_position(&mut self, ticket: ScanTicket, guard_held: bool) {
        if ticket.0 == self.epoch && guard_held {
            self.knowledge = Knowledge::Covered { since: self.epoch };
        }
    }

    /// Whether a WAL restart (or truncation) since the position provably lost nothing, and why.
    /// `None`: not known; the caller takes a full snapshot.
    pub(super) fn proof(&self) -> Option<Proof> {
        match self.knowledge {
            Knowledge::Covered { since } if since == self.epoch => Some(Proof::Guarded),
            Knowledge::Covered { .. } | Knowledge::Unknown => None,
            Knowledge::ReleasedUnderWriteLock => Some(Proof::Released),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_state_start_knows_nothing() {
        let mut g = GuardState::new();
        assert_eq!(g.proof(), None);
        g.taken();
        assert_eq!(g.proof(), None, "taking the guard alone proves nothing");
    }

    #[test]
    fn guard_state_scan_under_one_holding_covers_the_position() {
        let mut g = GuardState::new();
        g.taken();
        let t = g.scan_ticket();
        g.scan_reached_position(t, true);
        assert_eq!(g.proof(), Some(Proof::Guarded));
        // Not held at the end of the scan: no claim.
        let mut h = GuardState::new();
        h.taken();
        let t = h.scan_ticket();
        h.scan_reached_position(t, false);
        assert_eq!(h.proof(), None);
    }

    #[test]
    fn guard_state_break_in_the_holding_voids_the_claim() {
        for brk in [
            GuardState::taken,
            GuardState::maybe_lost,
            GuardState::closed,
            GuardState::released,
        ] {
            let mut g = GuardState::new();
            g.taken();
            let t = g.scan_ticket();
            g.scan_reached_position(t, true);
            brk(&mut g);
            assert_eq!(g.proof(), None);
        }
        // A scan that began under an earlier holding proves nothing either.
        let mut g = GuardState::new();
        g.taken();
        let t = g.scan_ticket();
        g.maybe_lost();
        g.scan_reached_position(t, true);
        assert_eq!(g.proof(), None);
    }

    #[test]
    fn guard_state_release_under_write_lock_lasts_until_closed() {
        let mut g = GuardState::new();
        g.taken();
        g.released_under_write_lock();
        assert_eq!(g.proof(), Some(Proof::Released));
        g.taken();
        g.maybe_lost();
        assert_eq!(g.proof(), Some(Proof::Released));
        let t = g.scan_ticket();
        g.scan_reached_position(t, true);
        assert_eq!(g.proof(), Some(Proof::Guarded));
        g.released_under_write_lock();
        g.closed();
        assert_eq!(g.proof(), None);
    }
}
