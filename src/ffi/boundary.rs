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
    /// Every value leaving an exported function passes here (`function` is its path).
    fn leaving(self, _function: &'static str) -> Self {
        self
    }
}

mod doc {
    include!(concat!(env!("OUT_DIR"), "/doc_statuses.rs"));
}

/// `UNILOCK_CHECK_STATUSES=1` (set by `make check`): a status that a function's doc block in the
/// header does not name aborts the process, so the manual cannot drift from the code.
static CHECK_STATUSES: once_cell::sync::Lazy<bool> =
    once_cell::sync::Lazy::new(|| std::env::var_os("UNILOCK_CHECK_STATUSES").is_some_and(|v| v == "1"));

/// The doc-block statuses of `function` (a path ending in `::unilock_x::{{closure}}`-free name).
pub fn documented(function: &str) -> Option<&'static [u32]> {
    doc::DOC_STATUSES.iter().find(|(n, _)| *n == function).map(|(_, s)| *s)
}

/// The exported function's own name from a type path such as `unilock::ffi::lock::unilock_lock::here`.
pub fn function_name(path: &'static str) -> &'static str {
    let mut parts = path.rsplit("::");
    parts.next();
    parts.next().unwrap_or(path)
}

/// True if `status` leaving `function` is not named in its doc block. `UNILOCK_E_INTERNAL` (a
/// caught panic) is documented once for every call, in the header's conventions.
pub fn undocumented(function: &str, status: unilock_status) -> bool {
    status != unilock_status::UNILOCK_E_INTERNAL && !documented(function).is_some_and(|s| s.contains(&(status as u32)))
}

pub fn name_of<T>(_: &T) -> &'static str {
    std::any::type_name::<T>()
}

impl Fallback for unilock_status {
    fn leaving(self, function: &'static str) -> Self {
        if *CHECK_STATUSES {
            let name = function_name(function);
            // UNILOCK_E_INTERNAL (a caught panic) is documented once for every call, in the header's
            // conventions; every other status must be named in the function's own block.
            if undocumented(name, self) {
                eprintln!("unilock: {name} returned {self:?}, which its doc block in unilock.h does not name");
                std::process::abort();
            }
        }
        self
    }
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
        fn here() {}
        let mark = $crate::ffi::status::detail_mark();
        let v = match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(_) => {
                ::log::error!("internal panic caught at the C boundary");
                $crate::ffi::status::set_detail("internal error: a panic was caught at the C boundary");
                $crate::ffi::boundary::Fallback::internal()
            }
        };
        if $crate::ffi::boundary::Fallback::failed(&v) {
            $crate::ffi::status::settle_detail(mark);
        }
        $crate::ffi::boundary::Fallback::leaving(v, $crate::ffi::boundary::name_of(&here))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_check_knows_each_functions_manual() {
        assert_eq!(function_name("unilock::ffi::lock::unilock_lock::here"), "unilock_lock");
        assert!(!undocumented("unilock_lock", unilock_status::UNILOCK_E_CONFLICT));
        assert!(undocumented("unilock_watch", unilock_status::UNILOCK_E_DEADLOCK));
        assert!(undocumented("unilock_no_such_function", unilock_status::UNILOCK_OK));
        assert!(!undocumented("unilock_watch", unilock_status::UNILOCK_E_INTERNAL));
        // Every function returning a status has a block naming at least one.
        for (name, statuses) in doc::DOC_STATUSES {
            assert!(!statuses.is_empty(), "{name} documents no status");
        }
        assert!(doc::DOC_STATUSES.len() >= 30);
    }
}
