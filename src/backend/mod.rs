//! Where files' states live. The in-process table (`memory`) is used directly by the facade; the
//! places shared by several participants — processes of one host, or hosts of a cluster — implement
//! [`Backend`]: today SQLite shared mode (`sqlite_shared`). A backend knows nothing of the rules: it
//! runs the caller's closure on one file's state atomically, keeps the state, and carries events
//! between participants.
//!
//! A new backend is one module here implementing `Backend`, plus an `open` that returns the
//! pre-restart state when this participant starts the table alone (whole-server restart → grace),
//! and one arm in the facade's `open` (see ARCHITECTURE.md).

pub mod etcd;
pub mod live;
pub mod memory;
pub mod shm;
pub mod sqlite_shared;

use crate::error::Result;
use crate::requests::{Ctx, Event};
use crate::table::FileState;

/// A lock table shared by several participants. Every method that reads or writes the table
/// returns `Err` when it could not: the caller answers `UNILOCK_E_STORE`, never a guess.
pub trait Backend: Send + Sync {
    /// For logs and inspection: "sqlite-shared", "shm", "etcd".
    fn name(&self) -> &'static str;
    /// This participant's id (a process row, a host slot): `FileState::me` is set to it.
    fn me(&self) -> u64;
    /// Runs `f` on `file`'s state (a blank one first when `create` and there is none; `None` when
    /// absent and not `create`), atomically with respect to every other participant; then keeps
    /// the state (deleting it when `is_empty_state()`), applies `fs.take_journal()` to the durable
    /// record, keeps the wait-for edges and the file → participants index in step, and delivers
    /// `ctx.outbox` (events for other participants) to their mailboxes and wakes them. With
    /// `ctx.need_graph`, `ctx.graph` is first filled with every participant's wait-for edges, read
    /// atomically with the file. Calls `f` once.
    fn with_file_dyn(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: &mut dyn FnMut(Option<&mut FileState>),
    ) -> Result<()>;
    /// A descriptor that becomes readable when mail may be waiting (folded into the event fd).
    fn wake_fd(&self) -> Option<i32>;
    /// Takes the events other participants addressed to this one.
    fn take_mail(&self) -> Result<Vec<Event>>;
    /// Every registered participant with its identity.
    fn procs(&self) -> Result<Vec<(u64, ProcIdent)>>;
    /// Is participant `id` alive? (processes: pid, start time and boot id; hosts: their registration)
    fn alive(&self, id: u64, ident: &ProcIdent) -> bool {
        let _ = id;
        ident.alive()
    }
    /// A dead participant whose clients asked for a TTL: when its state may be released (unix ms;
    /// 0 = not decided yet).
    fn release_at(&self, proc: u64) -> Result<u64>;
    fn set_release_at(&self, proc: u64, at_unix_ms: u64) -> Result<()>;
    /// The largest TTL registered for any of `clients` (0 if none).
    fn max_ttl(&self, clients: &[Box<[u8]>]) -> Result<u64>;
    /// Files where participant `proc` has state.
    fn files_of(&self, proc: u64) -> Result<Vec<Box<[u8]>>>;
    /// Every file with state.
    fn files(&self) -> Result<Vec<Box<[u8]>>>;
    /// The file a client's SMB lease key is on.
    fn lease_file(&self, client: &[u8], key: &[u8; 16]) -> Result<Option<Box<[u8]>>>;
    /// Forgets a participant that is gone, once its state was released.
    fn forget_proc(&self, proc: u64) -> Result<()>;
    /// Records a client registration where every participant sees it.
    fn put_client(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<()>;
    /// Forgets the pre-restart state (grace is over).
    fn end_grace(&self) -> Result<()>;
    /// Changes kept back for the durable record (the shared-memory table's write-behind queue, in
    /// PROCESS and BATCH durability): the facade arms its flush timer.
    fn has_pending(&self) -> bool {
        false
    }
    /// Writes the changes kept back (the flush timer).
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// `Backend::with_file_dyn` with a closure that returns a value.
pub fn with_file<T>(
    b: &dyn Backend,
    file: &[u8],
    create: bool,
    ctx: &Ctx,
    f: impl FnOnce(Option<&mut FileState>) -> T,
) -> Result<T> {
    let mut f = Some(f);
    let mut out = None;
    b.with_file_dyn(file, create, ctx, &mut |fs| {
        if let Some(f) = f.take() {
            out = Some(f(fs));
        }
    })?;
    out.ok_or(crate::error::Error::Store("the backend did not run the operation".into()))
}

/// This process's identity: pid, start time (clock ticks since boot) and boot id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcIdent {
    pub pid: u32,
    pub start: u64,
    pub boot: String,
}

/// A process's start time and whether it is a zombie (state `Z`: dead, not yet reaped), from
/// /proc/PID/stat.
fn stat_of(pid: u32) -> Option<(u64, bool)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 3 (state) and 22 (start time), counted after the ")" that ends the command name.
    let mut rest = s[s.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?;
    let start = rest.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

fn start_time(pid: u32) -> Option<u64> {
    stat_of(pid).map(|(start, _)| start)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl ProcIdent {
    pub fn me() -> ProcIdent {
        let pid = std::process::id();
        ProcIdent { pid, start: start_time(pid).unwrap_or(0), boot: boot_id() }
    }

    /// Is this process still running? A pid alive with another start time is a recycled pid, and a
    /// zombie (killed, not yet reaped by its parent) is dead: `kill(pid, 0)` still succeeds for it.
    pub fn alive(&self) -> bool {
        if self.boot != boot_id() {
            return false;
        }
        // SAFETY: signal 0 only checks for existence and permission.
        let r = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
        if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return false;
        }
        match stat_of(self.pid) {
            Some((s, zombie)) => s == self.start && !zombie,
            None => r == 0,
        }
    }
}

/// Wall-clock milliseconds (shared between processes).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_pid_is_not_the_old_process() {
        let me = ProcIdent::me();
        assert!(me.start > 0);
        assert!(me.alive());
        // Same pid, another start time: the pid was recycled, the old process is gone.
        assert!(!ProcIdent { start: me.start + 1, ..me.clone() }.alive());
        // Another boot.
        assert!(!ProcIdent { boot: "not-this-boot".into(), ..me.clone() }.alive());
        // A pid nobody uses.
        assert!(!ProcIdent { pid: 0x3fff_fff0, ..me }.alive());
    }

    #[test]
    fn a_zombie_is_dead() {
        // A child that exits and is not reaped yet: kill(pid, 0) succeeds, /proc says state Z.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let ident = ProcIdent { pid, start: start_time(pid).unwrap(), boot: boot_id() };
        let mut waited = 0;
        while !stat_of(pid).is_some_and(|(_, z)| z) {
            assert!(waited < 5000, "the child never became a zombie");
            std::thread::sleep(std::time::Duration::from_millis(1));
            waited += 1;
        }
        // SAFETY: signal 0 only checks for existence.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, 0) }, 0, "a zombie still answers kill(pid, 0)");
        assert!(!ident.alive());
        child.wait().unwrap();
        assert!(!ident.alive());
    }
}
