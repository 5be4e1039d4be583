//! The lock manager behind one `unilock *` handle: argument checks that do not depend on C, then one
//! call into the table per request. The FFI layer converts C arguments and calls these methods.

use crate::core::{Access, Flavour, LockType, Range};
use crate::error::{Error, Holder, Result};
use crate::owners::OwnerRef;
use crate::table::{check_file_id, check_owner, Table};

/// One lock element of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockReq {
    pub flavour: Flavour,
    pub kind: LockType,
    pub offset: u64,
    pub length: u64,
}

impl LockReq {
    pub fn range(&self) -> Result<Range> {
        Range::from_request(self.flavour, self.offset, self.length).map_err(|_| Error::InvalidRange)
    }
}

/// Settings fixed at open.
#[derive(Clone, Debug, Default)]
pub struct Settings {}

pub struct Manager {
    table: Table,
    #[allow(dead_code)]
    settings: Settings,
}

impl Manager {
    pub fn new(settings: Settings) -> Manager {
        Manager { table: Table::new(), settings }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn lock(&self, file: &[u8], o: &OwnerRef, req: &LockReq) -> Result<()> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = req.range()?;
        self.table.with_file(file, true, |fs| fs.unwrap().lock(o, req.flavour, req.kind, &range))
    }

    pub fn unlock(&self, file: &[u8], o: &OwnerRef, flavour: Flavour, offset: u64, length: u64) -> Result<()> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = Range::from_request(flavour, offset, length).map_err(|_| Error::InvalidRange)?;
        self.table.with_file(file, false, |fs| match fs {
            Some(fs) => fs.unlock(o, flavour, &range),
            None if flavour == Flavour::Posix => Ok(()),
            None => Err(Error::RangeNotLocked),
        })
    }

    /// `Ok(None)`: the request would be granted; `Ok(Some(holder))`: it would be refused by `holder`.
    pub fn test(&self, file: &[u8], o: &OwnerRef, req: &LockReq) -> Result<Option<Holder>> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = req.range()?;
        Ok(self.table.with_file(file, false, |fs| fs.and_then(|fs| fs.test(o, req.flavour, req.kind, &range))))
    }

    /// All elements or none; on failure, the index of the element that failed.
    pub fn lock_many(&self, file: &[u8], o: &OwnerRef, reqs: &[LockReq]) -> std::result::Result<(), (usize, Error)> {
        check_file_id(file).map_err(|e| (0, e))?;
        check_owner(o).map_err(|e| (0, e))?;
        let flavour = match reqs.first() {
            Some(r) => r.flavour,
            None => return Err((0, Error::Invalid("no lock elements"))),
        };
        let mut elems = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            if r.flavour != flavour {
                return Err((i, Error::Invalid("all elements must have one flavour")));
            }
            elems.push((r.kind, r.range().map_err(|e| (i, e))?));
        }
        self.table.with_file(file, true, |fs| fs.unwrap().lock_many(o, flavour, &elems))
    }

    /// Unlocks in order, stopping at the first error (whose index is returned).
    pub fn unlock_many(&self, file: &[u8], o: &OwnerRef, reqs: &[LockReq]) -> std::result::Result<(), (usize, Error)> {
        check_file_id(file).map_err(|e| (0, e))?;
        check_owner(o).map_err(|e| (0, e))?;
        if reqs.is_empty() {
            return Err((0, Error::Invalid("no lock elements")));
        }
        for (i, r) in reqs.iter().enumerate() {
            self.unlock(file, o, r.flavour, r.offset, r.length).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    pub fn check_io(&self, file: &[u8], o: &OwnerRef, access: Access, offset: u64, length: u64) -> Result<()> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = Range::from_request(Flavour::Windows, offset, length).map_err(|_| Error::InvalidRange)?;
        self.table.with_file(file, false, |fs| match fs {
            Some(fs) => fs.check_io(o, access, &range),
            None => Ok(()),
        })
    }

    pub fn release_open(&self, file: &[u8], o: &OwnerRef) -> Result<usize> {
        check_file_id(file)?;
        check_owner(o)?;
        Ok(self.table.with_file(file, false, |fs| fs.map(|fs| fs.release_open(o)).unwrap_or(0)))
    }

    pub fn release_client(&self, client: &[u8]) -> Result<usize> {
        check_owner(&OwnerRef { client, owner: b"", open_id: 0 })?;
        let mut n = 0;
        self.table.for_each_file(|fs| n += fs.release_client(client));
        Ok(n)
    }

    pub fn list(&self, file: &[u8]) -> Result<Vec<Holder>> {
        check_file_id(file)?;
        Ok(self.table.with_file(file, false, |fs| fs.map(|fs| fs.list()).unwrap_or_default()))
    }
}
