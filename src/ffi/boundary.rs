//! The panic boundary and the argument helpers every exported function uses.

use super::status::unilock_status;

/// What a panic (or a NULL where none is allowed) turns into for each C return type.
pub trait Fallback: Sized {
    fn internal() -> Self;
    fn invalid() -> Self;
    fn misuse() -> Self {
        Self::invalid()
    }
    /// Whether this return value reports a failure (which must leave a fresh `unilock_errdetail`).
    fn failed(&self) -> bool {
        false
    }
}

impl Fallback for unilock_status {
    fn internal() -> Self {
        unilock_status::UNILOCK_E_INTERNAL
    }
    fn invalid() -> Self {
        unilock_status::UNILOCK_E_INVALID
    }
    fn misuse() -> Self {
        unilock_status::UNILOCK_E_MISUSE
    }
    fn failed(&self) -> bool {
        *self as u32 >= 100
    }
}

impl Fallback for () {
    fn internal() -> Self {}
    fn invalid() -> Self {}
}

impl Fallback for u64 {
    fn internal() -> Self {
        0
    }
    fn invalid() -> Self {
        0
    }
}

impl Fallback for i64 {
    fn internal() -> Self {
        -1
    }
    fn invalid() -> Self {
        -1
    }
}

impl Fallback for i32 {
    fn internal() -> Self {
        -1
    }
    fn invalid() -> Self {
        -1
    }
}

impl Fallback for *const libc::c_char {
    fn internal() -> Self {
        c"(internal error)".as_ptr()
    }
    fn invalid() -> Self {
        c"(invalid)".as_ptr()
    }
}

/// Runs the body of an exported function under `catch_unwind`. A failing call that recorded no
/// detail of its own clears the thread's detail, so `unilock_errdetail()` never reports an earlier
/// call's failure.
macro_rules! boundary {
    ($($body:tt)*) => {{
        let mark = $crate::ffi::status::detail_mark();
        let r = match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(_) => {
                ::log::error!("internal panic caught at the C boundary");
                $crate::ffi::status::set_detail("internal error: a panic was caught at the C boundary");
                $crate::ffi::boundary::Fallback::internal()
            }
        };
        if $crate::ffi::boundary::Fallback::failed(&r) {
            $crate::ffi::status::settle_detail(mark);
        }
        r
    }};
}

/// Borrows `*const T` as `&T`, returning `UNILOCK_E_INVALID` (or the type's fallback) on NULL.
macro_rules! try_ref {
    ($p:expr) => {
        match unsafe { ($p).as_ref() } {
            Some(r) => r,
            None => {
                $crate::ffi::status::set_detail("a required pointer argument is NULL");
                return $crate::ffi::boundary::Fallback::invalid();
            }
        }
    };
}

/// Borrows the handle, refusing one used in a child after fork() (`UNILOCK_E_MISUSE`).
macro_rules! try_handle {
    ($p:expr) => {{
        let h = try_ref!($p);
        if !h.usable() {
            return $crate::ffi::boundary::Fallback::misuse();
        }
        h
    }};
}

/// Borrows a file id `(ptr, len)` as a byte slice; NULL with len 0 is the empty slice (refused later
/// as an empty id), NULL otherwise invalid, and a length over `UNILOCK_FILE_ID_MAX` is refused before
/// any slice is built.
macro_rules! try_bytes {
    ($p:expr, $len:expr) => {
        match $crate::ffi::boundary::bytes($p as *const u8, $len, $crate::ffi::types::UNILOCK_FILE_ID_MAX) {
            Some(s) => s,
            None => {
                $crate::ffi::status::set_detail("file id must be 1..128 bytes and not NULL");
                return $crate::ffi::boundary::Fallback::invalid();
            }
        }
    };
}

/// `(ptr, len)` as a slice, or `None` for NULL with a non-zero length or a length over `max` (checked
/// before the slice is built, so a hostile length never becomes one).
///
/// # Safety
/// A non-NULL `p` must point to `len` readable bytes for the duration of the call (the caller's
/// promise, documented on each function).
pub fn bytes<'a>(p: *const u8, len: usize, max: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return if len == 0 { Some(&[]) } else { None };
    }
    if len > max || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes that outlive the call.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Writes `v` through an out-pointer if it is not NULL.
pub fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: the caller passes NULL or a pointer to writable storage for one `T`.
        unsafe { p.write(v) }
    }
}
