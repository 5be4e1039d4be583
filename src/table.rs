//! One file's state and the checks of the names callers give: `FileState` and its request types live
//! in `crate::state` (split by concern); this module re-exports them under the names the rest of the
//! crate imports (`crate::table::FileState`...), and holds the limits on file ids, owners and clients.

pub use crate::state::{FileState, LeaseAnswer, LockReq, OpenSpec, Queued, WaitMeta, Watch};

use crate::error::{Error, Result};
use crate::owners::OwnerRef;

/// Largest file id, in bytes (SPEC.md §1).
pub const FILE_ID_MAX: usize = 128;
/// Largest owner, in bytes.
pub const OWNER_MAX: usize = 2048;
/// Largest client id, in bytes.
pub const CLIENT_MAX: usize = 255;

/// Validates a file id (1..=128 bytes).
pub fn check_file_id(file: &[u8]) -> Result<()> {
    if file.is_empty() || file.len() > FILE_ID_MAX {
        return Err(Error::Invalid("file id must be 1..128 bytes"));
    }
    Ok(())
}

/// Validates an owner as callers name it.
pub fn check_owner(o: &OwnerRef) -> Result<()> {
    if o.client.is_empty() || o.client.len() > CLIENT_MAX {
        return Err(Error::Invalid("client id must be 1..255 bytes"));
    }
    if o.owner.len() > OWNER_MAX {
        return Err(Error::Invalid("owner must be at most 2048 bytes"));
    }
    Ok(())
}
