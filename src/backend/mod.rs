//! Where files' states live when several participants share one table: the SQLite shared database
//! (processes of one host) or etcd (processes of several hosts).
//!
//! `Participants` stands in for the backend trait until it lands: the same method set, dispatched
//! by hand.

pub mod etcd;

use crate::error::Result;
use crate::requests::{Ctx, Event};
use crate::shared::{ProcIdent, Shared};
use crate::table::FileState;

pub enum Participants {
    Sqlite(Shared),
    Etcd(etcd::Etcd),
}

macro_rules! both {
    ($s:expr, $b:ident => $e:expr) => {
        match $s {
            Participants::Sqlite($b) => $e,
            Participants::Etcd($b) => $e,
        }
    };
}

impl Participants {
    pub fn name(&self) -> &'static str {
        match self {
            Participants::Sqlite(_) => "sqlite-shared",
            Participants::Etcd(_) => "etcd",
        }
    }
    pub fn me(&self) -> u64 {
        both!(self, b => b.me)
    }
    pub fn wake_fd(&self) -> i32 {
        match self {
            Participants::Sqlite(b) => b.fd(),
            Participants::Etcd(b) => b.wake_fd().unwrap_or(-1),
        }
    }
    pub fn with_file<T>(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: impl FnOnce(Option<&mut FileState>) -> T,
    ) -> Result<T> {
        both!(self, b => b.with_file(file, create, ctx, f))
    }
    pub fn take_mail(&self) -> Result<Vec<Event>> {
        both!(self, b => b.take_mail())
    }
    pub fn procs(&self) -> Result<Vec<(u64, ProcIdent)>> {
        both!(self, b => b.procs())
    }
    pub fn alive(&self, id: u64, ident: &ProcIdent) -> bool {
        match self {
            Participants::Sqlite(_) => ident.alive(),
            Participants::Etcd(b) => b.alive(id, ident),
        }
    }
    pub fn release_at(&self, proc: u64) -> Result<u64> {
        both!(self, b => b.release_at(proc))
    }
    pub fn set_release_at(&self, proc: u64, at: u64) -> Result<()> {
        both!(self, b => b.set_release_at(proc, at))
    }
    pub fn max_ttl(&self, clients: &[Box<[u8]>]) -> Result<u64> {
        both!(self, b => b.max_ttl(clients))
    }
    pub fn files_of(&self, proc: u64) -> Result<Vec<Box<[u8]>>> {
        both!(self, b => b.files_of(proc))
    }
    pub fn files(&self) -> Result<Vec<Box<[u8]>>> {
        both!(self, b => b.files())
    }
    pub fn lease_file(&self, client: &[u8], key: &[u8; 16]) -> Result<Option<Box<[u8]>>> {
        both!(self, b => b.lease_file(client, key))
    }
    pub fn forget_proc(&self, proc: u64) -> Result<()> {
        both!(self, b => b.forget_proc(proc))
    }
    pub fn put_client(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<()> {
        both!(self, b => b.put_client(client, adapter, address, ttl_ms))
    }
    pub fn end_grace(&self) -> Result<()> {
        both!(self, b => b.end_grace())
    }
}
