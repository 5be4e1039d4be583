//! Routes the `log` crate's records to a C callback.

use parking_lot::RwLock;
use std::ffi::CString;

/// Log level: deliver nothing (for `unilock_set_log`).
pub const UNILOCK_LOG_OFF: u32 = 0;
/// Errors: a failure the host should see.
pub const UNILOCK_LOG_ERROR: u32 = 1;
/// Warnings: something was refused or dropped.
pub const UNILOCK_LOG_WARN: u32 = 2;
/// Informational: state changes such as open, close, grace.
pub const UNILOCK_LOG_INFO: u32 = 3;
/// Debugging detail.
pub const UNILOCK_LOG_DEBUG: u32 = 4;
/// Tracing of every request.
pub const UNILOCK_LOG_TRACE: u32 = 5;

/// Receives one log message. `level` is a `UNILOCK_LOG_*` value; `message` is NUL-terminated and valid
/// only during the call. Called on whatever thread logged; must not block for long.
pub type unilock_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut libc::c_void, level: u32, message: *const libc::c_char)>;

struct Sink {
    f: unilock_log_fn,
    user_data: usize,
}

static SINK: RwLock<Sink> = RwLock::new(Sink { f: None, user_data: 0 });

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        SINK.read().f.is_some()
    }
    fn log(&self, record: &log::Record) {
        let sink = SINK.read();
        let Some(f) = sink.f else { return };
        let level = match record.level() {
            log::Level::Error => UNILOCK_LOG_ERROR,
            log::Level::Warn => UNILOCK_LOG_WARN,
            log::Level::Info => UNILOCK_LOG_INFO,
            log::Level::Debug => UNILOCK_LOG_DEBUG,
            log::Level::Trace => UNILOCK_LOG_TRACE,
        };
        let text = format!("{}", record.args()).replace('\0', " ");
        let msg = CString::new(text).unwrap_or_default();
        // SAFETY: the host registered `f` for exactly this call shape; `msg` outlives the call.
        unsafe { f(sink.user_data as *mut libc::c_void, level, msg.as_ptr()) }
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Routes the library's log messages to `fn` (process-wide).
///
/// `fn`: the callback, or NULL to stop logging. `user_data`: passed back unchanged as the callback's
/// first argument. `max_level`: the most detailed `UNILOCK_LOG_*` level delivered (`UNILOCK_LOG_OFF`
/// delivers nothing).
///
/// Returns `UNILOCK_OK`, or `UNILOCK_E_INVALID` for a level above `UNILOCK_LOG_TRACE`. Logging is global
/// to the process, like the `log` crate it is fed by; call this before opening handles. Thread-safe.
/// Messages are never produced while the library holds an internal lock the callback could need, but
/// the callback must not call `unilock_set_log`.
#[no_mangle]
pub extern "C" fn unilock_set_log(
    f: unilock_log_fn,
    user_data: *mut libc::c_void,
    max_level: u32,
) -> super::status::unilock_status {
    boundary! {
        let filter = match max_level {
            UNILOCK_LOG_OFF => log::LevelFilter::Off,
            UNILOCK_LOG_ERROR => log::LevelFilter::Error,
            UNILOCK_LOG_WARN => log::LevelFilter::Warn,
            UNILOCK_LOG_INFO => log::LevelFilter::Info,
            UNILOCK_LOG_DEBUG => log::LevelFilter::Debug,
            UNILOCK_LOG_TRACE => log::LevelFilter::Trace,
            _ => return super::status::unilock_status::UNILOCK_E_INVALID,
        };
        let _ = log::set_logger(&LOGGER);
        *SINK.write() = Sink { f, user_data: user_data as usize };
        log::set_max_level(if f.is_some() { filter } else { log::LevelFilter::Off });
        super::status::unilock_status::UNILOCK_OK
    }
}
