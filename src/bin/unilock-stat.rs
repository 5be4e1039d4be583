//! `unilock-stat`: lists the locks, leases, clients and grace state recorded in a unilock database,
//! in the spirit of `/proc/locks` and `smbstatus -L` (STYLE.md §3), or as one JSON object. One
//! concept in one file (over 800 lines: the reader, the text and the JSON form of one report).
//!
//! The database is only ever read: it is opened with `SQLITE_OPEN_READ_ONLY` (never created),
//! checkpoint-on-close is off, `query_only` is on, and the journal mode is left alone, so this is safe
//! while a server has the database open in WAL mode. All sections come from one read transaction, so
//! they describe one committed state (in `Batch` durability that state may lag the server by up to
//! `batch_ms`). In shared mode it reads the database behind the shared-memory table, not the mapping
//! (the usage text says so).
//!
//! A WAL database that no server has open has neither `-wal` nor `-shm` file, and opening it the
//! ordinary way would create both, owned by whoever runs this tool — a root-owned `-shm` would then
//! stop a server running under another uid (see `Store::open`). In that case the file is opened
//! `immutable` instead (the main file is then the whole state), and read again the ordinary way if a
//! server started meanwhile and the read failed.
//!
//! Column meanings are those of `unilock::store::schema` and `unilock::store`.

use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};
use unilock::store::schema;

const USAGE: &str = "\
usage: unilock-stat [--json] [--locks] [--leases] [--clients] [--grace] DB_PATH
       unilock-stat --help | --version

Lists the state recorded in a unilock database, read-only (also while a server uses it).
It reads the database, never the shared-memory table of a running shared-mode server: the
database is that table's durable record, written within each call in SYNC durability, and
(lock rows) up to batch_ms later in PROCESS and BATCH (queued in the mapping meanwhile).
With no section option, every section is listed; section options may be combined.

  --locks      byte-range locks, one line each (POSIX and Windows)
  --leases     leases, oplocks and delegations
  --clients    client records (adapter, address, TTL)
  --grace      the grace period after a restart, and the state waiting to be reclaimed
  --json       one JSON object instead of text
  --help       this text
  --version    the tool's version and the newest database schema it reads

Exit status: 0 success, 1 database error, 2 usage error.
";

// ---- arguments ----

#[derive(Default)]
struct Options {
    json: bool,
    locks: bool,
    leases: bool,
    clients: bool,
    grace: bool,
    path: Option<std::ffi::OsString>,
}

enum Parsed {
    Run(Options),
    Help,
    Version,
}

fn parse_args(args: impl Iterator<Item = std::ffi::OsString>) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut only_paths = false;
    for a in args {
        let flag = if only_paths { None } else { a.to_str() };
        match flag {
            Some("--") => only_paths = true,
            Some("-h" | "--help") => return Ok(Parsed::Help),
            Some("-V" | "--version") => return Ok(Parsed::Version),
            Some("--json") => o.json = true,
            Some("--locks") => o.locks = true,
            Some("--leases") => o.leases = true,
            Some("--clients") => o.clients = true,
            Some("--grace") => o.grace = true,
            Some(s) if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option '{s}'")),
            _ => {
                if o.path.is_some() {
                    return Err("more than one database path".into());
                }
                o.path = Some(a);
            }
        }
    }
    if o.path.is_none() {
        return Err("no database path".into());
    }
    if !(o.locks || o.leases || o.clients || o.grace) {
        o.locks = true;
        o.leases = true;
        o.clients = true;
        o.grace = true;
    }
    Ok(Parsed::Run(o))
}

// ---- what the database holds ----

struct Lock {
    file: Vec<u8>,
    client: Vec<u8>,
    owner: Vec<u8>,
    open_id: u64,
    /// 1 POSIX, 2 Windows.
    flavour: i64,
    /// 1 shared, 2 exclusive.
    kind: i64,
    start: u64,
    /// As callers gave it: `u64::MAX` (`UNILOCK_TO_EOF`) is "to the end" for POSIX.
    length: u64,
    /// Windows stacking.
    count: i64,
}

struct Lease {
    file: Vec<u8>,
    client: Vec<u8>,
    key: Vec<u8>,
    /// 0 lease, 1 oplock, 2 delegation.
    kind: i64,
    version: i64,
    dir: bool,
    /// R=1 H=2 W=4.
    state: i64,
    epoch: i64,
    breaking: bool,
    break_to: i64,
}

struct Client {
    client: Vec<u8>,
    adapter: String,
    address: String,
    ttl_ms: i64,
}

struct Grace {
    /// A `grace` row exists.
    active: bool,
    expected: Vec<String>,
    deadline_unix_ms: Option<i64>,
    /// Pre-restart locks (stacked Windows locks counted once per stack level) and leases.
    prev_locks: i64,
    prev_leases: i64,
}

struct Snapshot {
    schema_version: i64,
    locks: Vec<Lock>,
    leases: Vec<Lease>,
    clients: Vec<Client>,
    grace: Grace,
}

/// A BLOB or TEXT column as bytes (the store writes BLOBs; anything else is shown as found).
fn bytes(r: &Row, i: usize) -> rusqlite::Result<Vec<u8>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        ValueRef::Null => Vec::new(),
        ValueRef::Integer(n) => n.to_string().into_bytes(),
        ValueRef::Real(f) => f.to_string().into_bytes(),
    })
}

fn text(r: &Row, i: usize) -> rusqlite::Result<String> {
    Ok(String::from_utf8_lossy(&bytes(r, i)?).into_owned())
}

fn open(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(uri(path, immutable), flags)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA query_only = 1")?;
    Ok(conn)
}

/// `file:` URI of `path` (percent-encoded, so that `?`, `#` and `%` in names stay part of the path),
/// with `mode=ro` and, for a database nobody has open, `immutable=1`.
fn uri(path: &Path, immutable: bool) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut s = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s.push_str("?mode=ro");
    if immutable {
        s.push_str("&immutable=1");
    }
    s
}

fn read_snapshot(conn: &Connection) -> Result<Snapshot, String> {
    let err = |e: rusqlite::Error| e.to_string();
    // Any read of a corrupt file (or of a file that is not a database) fails here.
    let schema_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let tables: Vec<String> = {
        let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").map_err(err)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(err)?
    };
    if schema_version > schema::VERSION {
        return Err(format!(
            "database schema version {schema_version} is newer than this tool's {}; use the unilock-stat of the library that wrote it",
            schema::VERSION
        ));
    }
    for t in ["clients", "locks", "leases", "prev_locks", "prev_leases", "grace"] {
        if !tables.iter().any(|n| n == t) {
            return Err(format!("not a unilock database (schema version {schema_version}, no table '{t}')"));
        }
    }

    let mut locks = Vec::new();
    {
        let mut st = conn
            .prepare("SELECT file, client, owner, open_id, flavour, type, start, length, count FROM locks")
            .map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok(Lock {
                    file: bytes(r, 0)?,
                    client: bytes(r, 1)?,
                    owner: bytes(r, 2)?,
                    open_id: r.get::<_, i64>(3)? as u64,
                    flavour: r.get(4)?,
                    kind: r.get(5)?,
                    start: r.get::<_, i64>(6)? as u64,
                    length: r.get::<_, i64>(7)? as u64,
                    count: r.get(8)?,
                })
            })
            .map_err(err)?;
        for row in rows {
            locks.push(row.map_err(err)?);
        }
    }
    // Offsets are u64 stored as i64 bit patterns, so sort here, not in SQL.
    locks.sort_by(|a, b| {
        (&a.file, a.start, a.length, a.flavour, &a.client, &a.owner, a.open_id, a.kind)
            .cmp(&(&b.file, b.start, b.length, b.flavour, &b.client, &b.owner, b.open_id, b.kind))
    });

    let mut leases = Vec::new();
    {
        let mut st = conn
            .prepare(
                "SELECT file, client, key, kind, version, dir, state, epoch, breaking, break_to FROM leases
                 ORDER BY file, client, key",
            )
            .map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok(Lease {
                    file: bytes(r, 0)?,
                    client: bytes(r, 1)?,
                    key: bytes(r, 2)?,
                    kind: r.get(3)?,
                    version: r.get(4)?,
                    dir: r.get::<_, i64>(5)? != 0,
                    state: r.get(6)?,
                    epoch: r.get(7)?,
                    breaking: r.get::<_, i64>(8)? != 0,
                    break_to: r.get(9)?,
                })
            })
            .map_err(err)?;
        for row in rows {
            leases.push(row.map_err(err)?);
        }
    }

    let mut clients = Vec::new();
    {
        let mut st =
            conn.prepare("SELECT client, adapter, address, ttl_ms FROM clients ORDER BY client").map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok(Client { client: bytes(r, 0)?, adapter: text(r, 1)?, address: text(r, 2)?, ttl_ms: r.get(3)? })
            })
            .map_err(err)?;
        for row in rows {
            clients.push(row.map_err(err)?);
        }
    }

    let row: Option<(String, i64)> = {
        let mut st = conn.prepare("SELECT expected, deadline_unix_ms FROM grace WHERE id = 1").map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        match rows.next().map_err(err)? {
            Some(r) => Some((text(r, 0).map_err(err)?, r.get(1).map_err(err)?)),
            None => None,
        }
    };
    // Counted as the server reads them at start (`Store::read_prev`): rows left by an unfinished
    // earlier grace period are summed, stacks count per level, and each lease key counts once.
    let prev_locks: i64 = conn
        .query_row(
            "SELECT coalesce(sum(n), 0) FROM (SELECT sum(count) AS n FROM prev_locks
             GROUP BY file, client, owner, open_id, flavour, type, start, length HAVING sum(count) > 0)",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let prev_leases: i64 = conn
        .query_row("SELECT count(*) FROM (SELECT 1 FROM prev_leases GROUP BY file, client, key)", [], |r| r.get(0))
        .map_err(err)?;
    let grace = Grace {
        active: row.is_some(),
        expected: row
            .as_ref()
            .map(|(e, _)| e.split('\n').filter(|c| !c.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        deadline_unix_ms: row.map(|(_, d)| d),
        prev_locks,
        prev_leases,
    };
    Ok(Snapshot { schema_version, locks, leases, clients, grace })
}

fn load(path: &Path) -> Result<Snapshot, String> {
    match std::fs::metadata(path) {
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        Ok(m) if m.is_dir() => return Err(format!("cannot open {}: is a directory", path.display())),
        Ok(_) => {}
    }
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        Path::new(&p).exists()
    };
    let idle = !side("-wal") && !side("-shm");
    let attempt = |immutable: bool| -> Result<Snapshot, String> {
        let mut conn = open(path, immutable).map_err(|e| e.to_string())?;
        // One read transaction: every section shows the same committed state.
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        let snap = read_snapshot(&tx)?;
        tx.rollback().map_err(|e| e.to_string())?;
        Ok(snap)
    };
    let result = attempt(idle);
    match result {
        // A server opened the database while it was read as immutable: read it the ordinary way.
        Err(_) if idle && side("-shm") => attempt(false),
        r => r,
    }
    .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

// ---- formatting helpers ----

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The bytes as text if they are UTF-8 without control characters (the empty string included).
fn printable(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok().filter(|s| !s.chars().any(char::is_control))
}

/// A byte string for the text output: printable text as is, or in double quotes (with `\"` and
/// `\\`) where it could be misread (empty, spaces, `"`, `\`, `=`, parentheses, a leading `0x`);
/// anything else as `0x` and hex.
fn show(b: &[u8]) -> String {
    match printable(b) {
        Some(s) => {
            let plain =
                !s.is_empty() && !s.starts_with("0x") && !s.chars().any(|c| c.is_whitespace() || "\"\\=()".contains(c));
            if plain {
                s.to_owned()
            } else {
                let mut q = String::from("\"");
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        q.push('\\');
                    }
                    q.push(c);
                }
                q.push('"');
                q
            }
        }
        None => format!("0x{}", hex(b)),
    }
}

/// (device or fsid, inode, generation) of a canonical file id (`unilock_file_id_make`: 25 bytes,
/// version byte 0x01, then three big-endian u64).
fn canonical(file: &[u8]) -> Option<(u64, u64, u64)> {
    if file.len() != 25 || file[0] != 1 {
        return None;
    }
    let n = |i: usize| u64::from_be_bytes(file[i..i + 8].try_into().unwrap());
    Some((n(1), n(9), n(17)))
}

fn show_file(file: &[u8]) -> String {
    match canonical(file) {
        Some((dev, ino, gen)) => format!("{}({dev}:{ino}:{gen})", hex(file)),
        None => match printable(file) {
            Some(_) => format!("{}({})", hex(file), show(file)),
            None => hex(file),
        },
    }
}

fn flavour_name(f: i64) -> String {
    match f {
        1 => "POSIX".into(),
        2 => "WINDOWS".into(),
        n => format!("FLAVOUR{n}"),
    }
}

fn type_names(t: i64) -> (String, &'static str) {
    match t {
        1 => ("SHARED".into(), "READ"),
        2 => ("EXCLUSIVE".into(), "WRITE"),
        n => (format!("TYPE{n}"), "?"),
    }
}

/// The last byte of a lock, or `None` for a POSIX lock to the end (`EOF`) and `Some(None)` for a
/// zero-length Windows lock, which covers no byte. u128: `start + length` may reach 2^64.
fn lock_end(l: &Lock) -> Option<Option<u128>> {
    if l.flavour == 1 && l.length == u64::MAX {
        return None;
    }
    if l.length == 0 {
        return Some(None);
    }
    Some(Some(l.start as u128 + l.length as u128 - 1))
}

fn lease_kind(k: i64) -> String {
    match k {
        0 => "LEASE".into(),
        1 => "OPLOCK".into(),
        2 => "DELEGATION".into(),
        n => format!("KIND{n}"),
    }
}

/// Lease state as letters in the usual order (`RWH`, `RH`, `R`), `NONE` for 0.
fn state_letters(s: i64) -> String {
    let mut out = String::new();
    for (bit, c) in [(1, 'R'), (4, 'W'), (2, 'H')] {
        if s & bit != 0 {
            out.push(c);
        }
    }
    let rest = s & !7;
    if rest != 0 {
        let _ = write!(out, "+0x{rest:x}");
    }
    if out.is_empty() {
        out.push_str("NONE");
    }
    out
}

fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ` (days to civil date: H. Hinnant's algorithm).
fn utc(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Left-aligned columns (the last one unpadded), rows prefixed as given.
fn table(out: &mut String, rows: &[(String, Vec<String>)]) {
    let cols = rows.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let mut width = vec![0; cols];
    let prefix = rows.iter().map(|(p, _)| p.chars().count()).max().unwrap_or(0);
    for (_, r) in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    for (p, r) in rows {
        let mut line = format!("{p:>prefix$}");
        for (i, c) in r.iter().enumerate() {
            line.push(' ');
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}", w = width[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Locks (stack levels counted) and leases a client holds.
fn held(s: &Snapshot, client: &[u8]) -> (i64, usize) {
    let locks = s.locks.iter().filter(|l| l.client == client).map(|l| l.count).sum();
    (locks, s.leases.iter().filter(|l| l.client == client).count())
}

// ---- text output ----

fn text_output(o: &Options, s: &Snapshot) -> String {
    let mut out = String::new();
    let mut sep = false;
    let mut section = |out: &mut String, title: String| {
        if sep {
            out.push('\n');
        }
        sep = true;
        out.push_str(&title);
        out.push('\n');
    };
    if o.locks {
        section(&mut out, format!("LOCKS ({})", s.locks.len()));
        let rows: Vec<_> = s
            .locks
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (t, rw) = type_names(l.kind);
                let (start, end) = match lock_end(l) {
                    None => (l.start.to_string(), "EOF".to_string()),
                    Some(None) => (l.start.to_string(), "-".to_string()),
                    Some(Some(e)) => (l.start.to_string(), e.to_string()),
                };
                let mut tail = Vec::new();
                if l.length == 0 {
                    tail.push("zero-length".to_string());
                }
                if l.count != 1 {
                    tail.push(format!("x{}", l.count));
                }
                (
                    format!("{}:", i + 1),
                    vec![
                        flavour_name(l.flavour),
                        t,
                        rw.to_string(),
                        format!("file={}", show_file(&l.file)),
                        format!("client={}", show(&l.client)),
                        format!("owner={}", show(&l.owner)),
                        format!("open={}", l.open_id),
                        start,
                        end,
                        tail.join(" "),
                    ],
                )
            })
            .collect();
        table(&mut out, &rows);
    }
    if o.leases {
        section(&mut out, format!("LEASES ({})", s.leases.len()));
        let rows: Vec<_> = s
            .leases
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut tail = vec![format!("v{}", l.version)];
                if l.dir {
                    tail.push("dir".into());
                }
                if l.breaking {
                    tail.push(format!("BREAKING->{}", state_letters(l.break_to)));
                }
                (
                    format!("{}:", i + 1),
                    vec![
                        lease_kind(l.kind),
                        state_letters(l.state),
                        format!("file={}", show_file(&l.file)),
                        format!("client={}", show(&l.client)),
                        format!("key={}", hex(&l.key)),
                        format!("epoch={}", l.epoch),
                        tail.join(" "),
                    ],
                )
            })
            .collect();
        table(&mut out, &rows);
    }
    if o.clients {
        section(&mut out, format!("CLIENTS ({})", s.clients.len()));
        let rows: Vec<_> = s
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (locks, leases) = held(s, &c.client);
                (
                    format!("{}:", i + 1),
                    vec![
                        format!("client={}", show(&c.client)),
                        format!("adapter={}", show(c.adapter.as_bytes())),
                        format!("address={}", show(c.address.as_bytes())),
                        format!("ttl_ms={}", c.ttl_ms),
                        format!("locks={locks}"),
                        format!("leases={leases}"),
                    ],
                )
            })
            .collect();
        table(&mut out, &rows);
    }
    if o.grace {
        let g = &s.grace;
        section(&mut out, format!("GRACE: {}", if g.active { "active" } else { "inactive" }));
        if g.active {
            let names: Vec<String> = g.expected.iter().map(|c| show(c.as_bytes())).collect();
            let _ = writeln!(out, "  expected clients ({}): {}", names.len(), names.join(" "));
            if let Some(d) = g.deadline_unix_ms {
                let left = d - now_unix_ms();
                if left > 0 {
                    let _ = writeln!(out, "  remaining: {}.{:03} s (until {})", left / 1000, left % 1000, utc(d));
                } else {
                    let _ =
                        writeln!(out, "  remaining: expired at {}, ends when the server next runs its timers", utc(d));
                }
            }
        }
        if g.active || g.prev_locks != 0 || g.prev_leases != 0 {
            // Reclaims are not recorded in the database: these are all the pre-restart locks and
            // leases, reclaimed or not; grace end releases those nobody reclaimed.
            let _ = writeln!(
                out,
                "  pre-restart state: {}, {} (released at grace end unless reclaimed)",
                plural(g.prev_locks, "lock", "locks"),
                plural(g.prev_leases, "lease", "leases")
            );
        }
    }
    out
}

// ---- JSON output ----

fn jstr(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A byte string: `{"hex": "...", "text": "..."}`, `text` only when printable.
fn jbytes(out: &mut String, b: &[u8]) {
    out.push_str("{\"hex\":");
    jstr(out, &hex(b));
    if let Some(t) = printable(b) {
        out.push_str(",\"text\":");
        jstr(out, t);
    }
    out.push('}');
}

/// A file id: as `jbytes`, plus `canonical: {dev, inode, generation}` for a canonical id.
fn jfile(out: &mut String, f: &[u8]) {
    jbytes(out, f);
    if let Some((dev, ino, gen)) = canonical(f) {
        out.pop();
        let _ = write!(out, ",\"canonical\":{{\"dev\":{dev},\"inode\":{ino},\"generation\":{gen}}}}}");
    }
}

fn jarray<T>(out: &mut String, name: &str, items: &[T], mut item: impl FnMut(&mut String, usize, &T)) {
    jstr(out, name);
    out.push_str(": [");
    for (i, x) in items.iter().enumerate() {
        out.push_str(if i == 0 { "\n    " } else { ",\n    " });
        item(out, i, x);
    }
    out.push_str(if items.is_empty() { "]" } else { "\n  ]" });
}

fn json_output(o: &Options, s: &Snapshot) -> String {
    let mut out = String::from("{\n  ");
    let _ = write!(out, "\"schema_version\": {}", s.schema_version);
    if o.locks {
        out.push_str(",\n  ");
        jarray(&mut out, "locks", &s.locks, |out, i, l| {
            let (t, rw) = type_names(l.kind);
            let _ = write!(out, "{{\"index\":{},\"flavour\":", i + 1);
            jstr(out, &flavour_name(l.flavour));
            out.push_str(",\"type\":");
            jstr(out, &t);
            out.push_str(",\"access\":");
            jstr(out, rw);
            out.push_str(",\"file\":");
            jfile(out, &l.file);
            out.push_str(",\"client\":");
            jbytes(out, &l.client);
            out.push_str(",\"owner\":");
            jbytes(out, &l.owner);
            let end = match lock_end(l) {
                Some(Some(e)) => e.to_string(),
                _ => "null".into(),
            };
            let _ = write!(
                out,
                ",\"open_id\":{},\"start\":{},\"length\":{},\"end\":{end},\"to_eof\":{},\"count\":{}}}",
                l.open_id,
                l.start,
                l.length,
                lock_end(l).is_none(),
                l.count
            );
        });
    }
    if o.leases {
        out.push_str(",\n  ");
        jarray(&mut out, "leases", &s.leases, |out, i, l| {
            let _ = write!(out, "{{\"index\":{},\"file\":", i + 1);
            jfile(out, &l.file);
            out.push_str(",\"client\":");
            jbytes(out, &l.client);
            out.push_str(",\"key\":");
            jstr(out, &hex(&l.key));
            out.push_str(",\"kind\":");
            jstr(out, &lease_kind(l.kind));
            out.push_str(",\"state\":");
            jstr(out, &state_letters(l.state));
            let _ = write!(
                out,
                ",\"state_bits\":{},\"version\":{},\"dir\":{},\"epoch\":{},\"breaking\":{},\"break_to\":",
                l.state, l.version, l.dir, l.epoch, l.breaking
            );
            jstr(out, &state_letters(l.break_to));
            out.push('}');
        });
    }
    if o.clients {
        out.push_str(",\n  ");
        jarray(&mut out, "clients", &s.clients, |out, _, c| {
            let (locks, leases) = held(s, &c.client);
            out.push_str("{\"client\":");
            jbytes(out, &c.client);
            out.push_str(",\"adapter\":");
            jstr(out, &c.adapter);
            out.push_str(",\"address\":");
            jstr(out, &c.address);
            let _ = write!(out, ",\"ttl_ms\":{},\"locks\":{locks},\"leases\":{leases}}}", c.ttl_ms);
        });
    }
    if o.grace {
        let g = &s.grace;
        let _ = write!(out, ",\n  \"grace\": {{\"active\":{},\"expected_clients\":[", g.active);
        for (i, c) in g.expected.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            jstr(&mut out, c);
        }
        out.push_str("],\"deadline_unix_ms\":");
        match g.deadline_unix_ms {
            Some(d) => {
                let left = d - now_unix_ms();
                let _ = write!(out, "{d},\"remaining_ms\":{},\"expired\":{}", left.max(0), left <= 0);
            }
            None => out.push_str("null,\"remaining_ms\":null,\"expired\":false"),
        }
        let _ = write!(out, ",\"prev_locks\":{},\"prev_leases\":{}}}", g.prev_locks, g.prev_leases);
    }
    out.push_str("\n}\n");
    out
}

// ---- main ----

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Parsed::Help) => return emit(USAGE),
        Ok(Parsed::Version) => {
            return emit(&format!(
                "unilock-stat {} (reads database schema up to version {})\n",
                env!("CARGO_PKG_VERSION"),
                schema::VERSION
            ))
        }
        Ok(Parsed::Run(o)) => o,
        Err(e) => {
            eprintln!("unilock-stat: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let path = opts.path.clone().expect("parse_args requires a path");
    match load(Path::new(&path)) {
        Ok(snap) => emit(&if opts.json { json_output(&opts, &snap) } else { text_output(&opts, &snap) }),
        Err(e) => {
            eprintln!("unilock-stat: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(s: &str) -> ExitCode {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unilock-stat: cannot write the output: {e}");
            ExitCode::from(1)
        }
    }
}
