//! `unilock-stat` on databases made through the library: every lock, lease and client of a live
//! server (the `Manager` stays open, the database in WAL mode) in text and JSON, the grace period
//! after a restart (live, then with no server, then expired), and the error exits (missing file not
//! created, corrupt file, newer schema, usage errors).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use unilock::core::lease;
use unilock::core::{Flavour, LockType};
use unilock::manager::{LockReq, Manager, Settings};
use unilock::owners::OwnerRef;
use unilock::store::Durability;
use unilock::table::{LeaseAnswer, OpenSpec};

const STAT: &str = env!("CARGO_BIN_EXE_unilock-stat");
const TO_EOF: u64 = u64::MAX;

/// A temporary directory of its own per test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "unilock-stat-{name}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn stat<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    let o = Command::new(STAT).args(args).output().expect("run unilock-stat");
    Out {
        code: o.status.code().expect("exit code"),
        stdout: String::from_utf8(o.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(o.stderr).expect("UTF-8 stderr"),
    }
}

fn stat_ok(args: &[&str]) -> String {
    let o = stat(args);
    assert_eq!(o.code, 0, "unilock-stat {args:?} failed: {}", o.stderr);
    assert!(o.stderr.is_empty(), "stderr: {}", o.stderr);
    o.stdout
}

fn manager(db: &Path) -> Manager {
    Manager::new(Settings {
        db_path: Some(db.to_str().unwrap().to_string()),
        durability: Some(Durability::Sync),
        grace_ms: 600_000,
        ..Default::default()
    })
    .expect("Manager::new")
}

/// `unilock_file_id_make`'s encoding.
fn canonical_id(dev: u64, ino: u64, gen: u64) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&dev.to_be_bytes());
    b.extend_from_slice(&ino.to_be_bytes());
    b.extend_from_slice(&gen.to_be_bytes());
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The lines of one text section (after its title line, up to the blank line), with the column
/// padding squeezed to one space (no value in these tests has two spaces in a row).
fn section(out: &str, title: &str) -> Vec<String> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with(title));
    assert!(lines.next().is_some(), "no section {title} in:\n{out}");
    lines
        .take_while(|l| !l.is_empty())
        .map(|l| l.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" "))
        .collect()
}

/// The one line of `lines` that contains every part.
fn one_line<'a>(lines: &'a [String], parts: &[&str]) -> &'a str {
    let hits: Vec<&str> = lines.iter().map(String::as_str).filter(|l| parts.iter().all(|p| l.contains(p))).collect();
    assert_eq!(hits.len(), 1, "want one line with {parts:?}, got {hits:?} in:\n{}", lines.join("\n"));
    hits[0]
}

// ---- a tiny JSON reader (serde_json is not a dependency) ----

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(s: &str) -> Json {
        let mut p = Parser { s: s.as_bytes(), i: 0 };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing text after the JSON value");
        v
    }
    fn get(&self, k: &str) -> &Json {
        match self {
            Json::Obj(m) => {
                let hits: Vec<_> = m.iter().filter(|(n, _)| n == k).collect();
                assert_eq!(hits.len(), 1, "key {k} present once in {self:?}");
                &hits[0].1
            }
            _ => panic!("not an object: {self:?}"),
        }
    }
    fn has(&self, k: &str) -> bool {
        matches!(self, Json::Obj(m) if m.iter().any(|(n, _)| n == k))
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => panic!("not an array: {self:?}"),
        }
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {self:?}"),
        }
    }
    fn num(&self) -> u128 {
        match self {
            Json::Num(n) => n.parse().unwrap_or_else(|_| panic!("not an unsigned integer: {n}")),
            _ => panic!("not a number: {self:?}"),
        }
    }
    fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            _ => panic!("not a bool: {self:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s.get(self.i), Some(&c), "expected '{}' at byte {}", c as char, self.i);
        self.i += 1;
    }
    fn peek(&mut self) -> u8 {
        self.ws();
        *self.s.get(self.i).expect("unexpected end of JSON")
    }
    fn lit(&mut self, w: &str, v: Json) -> Json {
        assert!(self.s[self.i..].starts_with(w.as_bytes()), "bad literal at byte {}", self.i);
        self.i += w.len();
        v
    }
    fn value(&mut self) -> Json {
        match self.peek() {
            b'{' => {
                self.i += 1;
                let mut m = Vec::new();
                if self.peek() == b'}' {
                    self.i += 1;
                    return Json::Obj(m);
                }
                loop {
                    self.ws();
                    let k = self.string();
                    self.eat(b':');
                    m.push((k, self.value()));
                    match self.peek() {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Json::Obj(m);
                        }
                        c => panic!("unexpected '{}' in object at byte {}", c as char, self.i),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                if self.peek() == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    match self.peek() {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Json::Arr(a);
                        }
                        c => panic!("unexpected '{}' in array at byte {}", c as char, self.i),
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => self.lit("true", Json::Bool(true)),
            b'f' => self.lit("false", Json::Bool(false)),
            b'n' => self.lit("null", Json::Null),
            _ => {
                let start = self.i;
                if self.s[self.i] == b'-' {
                    self.i += 1;
                }
                while self.i < self.s.len() && (self.s[self.i].is_ascii_digit() || b".eE+-".contains(&self.s[self.i])) {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                assert!(
                    n.trim_start_matches('-').starts_with(|c: char| c.is_ascii_digit()),
                    "bad number at byte {start}"
                );
                Json::Num(n.to_string())
            }
        }
    }
    fn hex4(&mut self) -> u32 {
        let h = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
        self.i += 4;
        u32::from_str_radix(h, 16).expect("\\u escape")
    }
    fn string(&mut self) -> String {
        assert_eq!(self.s[self.i], b'"', "expected a string at byte {}", self.i);
        self.i += 1;
        let mut out = String::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut u = self.hex4();
                            if (0xd800..0xdc00).contains(&u) {
                                assert_eq!(&self.s[self.i..self.i + 2], b"\\u", "lone surrogate");
                                self.i += 2;
                                let lo = self.hex4();
                                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                            }
                            out.push(char::from_u32(u).expect("valid \\u escape"));
                        }
                        _ => panic!("bad escape \\{} at byte {}", e as char, self.i),
                    }
                }
                c if c < 0x20 => panic!("raw control character in a JSON string at byte {}", self.i),
                _ => {
                    // Copy one UTF-8 sequence.
                    let start = self.i - 1;
                    while self.i < self.s.len() && (self.s[self.i] & 0xc0) == 0x80 {
                        self.i += 1;
                    }
                    out.push_str(std::str::from_utf8(&self.s[start..self.i]).expect("UTF-8 in JSON string"));
                }
            }
        }
    }
}

// ---- the state the tests put in the database ----

const ALICE: OwnerRef<'static> = OwnerRef { client: b"nfs4:alice", owner: b"pid 42", open_id: 0 };
const BOB: OwnerRef<'static> = OwnerRef { client: b"nlm:bob", owner: &[0xff, 0x00, 0x01], open_id: 0 };
/// A Windows owner whose bytes need escaping, as text and in JSON.
const CAROL: OwnerRef<'static> = OwnerRef { client: b"smb:carol", owner: b"sess\"1\\", open_id: 7 };
const PLAIN: &[u8] = b"export/a.txt";
const LEASED: &[u8] = b"export/leased.doc";
const DEV: u64 = 64769;
const INO: u64 = 1234567;
const GEN: u64 = 3;
const BIG: u64 = 1 << 63;

fn req(flavour: Flavour, kind: LockType, offset: u64, length: u64) -> LockReq {
    LockReq { flavour, kind, offset, length }
}

/// Locks (6 rows, 7 locks: one stack of 2), a lease; returns the canonical file id and the lease's
/// epoch as granted.
fn populate(m: &Manager) -> (Vec<u8>, u16) {
    use Flavour::{Posix, Windows};
    use LockType::{Exclusive, Shared};
    let canon = canonical_id(DEV, INO, GEN);
    m.lock(PLAIN, &ALICE, &req(Posix, Exclusive, 0, 100)).unwrap();
    m.lock(PLAIN, &ALICE, &req(Posix, Shared, 200, TO_EOF)).unwrap();
    m.lock(&canon, &BOB, &req(Posix, Exclusive, 10, 5)).unwrap();
    m.lock(&canon, &CAROL, &req(Windows, Shared, 1000, 10)).unwrap();
    m.lock(&canon, &CAROL, &req(Windows, Shared, 1000, 10)).unwrap(); // stacked
    m.lock(&canon, &CAROL, &req(Windows, Exclusive, 5000, 0)).unwrap(); // zero-length
    m.lock(&canon, &CAROL, &req(Windows, Exclusive, BIG, 16)).unwrap();
    let spec = OpenSpec {
        kind: Some(lease::Kind::Lease),
        key: [0xab; 16],
        requested: lease::R | lease::H,
        version: 2,
        epoch: 5,
        stat: false,
        write: false,
        overwrite: false,
        dir: false,
        sharing_violation: false,
        reclaim: false,
        file_size: 0,
        timeout_ms: 0,
        ..Default::default()
    };
    match m.open_file(LEASED, CAROL.client, 9, &spec, None) {
        Ok(LeaseAnswer::Ready(g)) => {
            assert_eq!(g.state, lease::R | lease::H);
            (canon, g.epoch)
        }
        other => panic!("lease not granted: {other:?}"),
    }
}

fn check_text_locks(out: &str, canon: &[u8]) {
    let locks = section(out, "LOCKS (6)");
    assert_eq!(locks.len(), 6, "{out}");
    let plain = format!("file={}(export/a.txt)", hex(PLAIN));
    let canon = format!("file={}({DEV}:{INO}:{GEN})", hex(canon));
    let alice = ["POSIX ", "client=nfs4:alice ", "owner=\"pid 42\" ", "open=0 "];
    let l = one_line(&locks, &[&alice[..], &[" EXCLUSIVE ", " WRITE ", &plain, " 0 ", " 99"]].concat());
    assert!(l.ends_with(" 99"), "{l}");
    let l = one_line(&locks, &[&alice[..], &[" SHARED ", " READ ", &plain, " 200 ", " EOF"]].concat());
    assert!(l.ends_with(" EOF"), "to-EOF lock: {l}");
    let l = one_line(
        &locks,
        &["POSIX ", " EXCLUSIVE ", " WRITE ", &canon, "client=nlm:bob ", "owner=0xff0001 ", " 10 ", " 14"],
    );
    assert!(l.ends_with(" 14"), "{l}");
    let carol = ["WINDOWS ", &canon, "client=smb:carol ", "owner=\"sess\\\"1\\\\\" ", "open=7 "];
    let l = one_line(&locks, &[&carol[..], &[" SHARED ", " READ ", " 1000 ", " 1009 "]].concat());
    assert!(l.ends_with(" x2"), "stacked lock shows its count: {l}");
    let l = one_line(&locks, &[&carol[..], &[" EXCLUSIVE ", " 5000 "]].concat());
    assert!(l.ends_with(" - zero-length"), "zero-length lock: {l}");
    let l = one_line(&locks, &[&carol[..], &[" EXCLUSIVE ", &format!(" {BIG} "), &format!(" {}", BIG + 15)]].concat());
    assert!(l.ends_with(&format!(" {}", BIG + 15)), "{l}");
    // The index comes first, /proc/locks style.
    for (i, l) in locks.iter().enumerate() {
        assert!(l.starts_with(&format!("{}: ", i + 1)), "{l}");
    }
}

fn check_text_leases(out: &str, epoch: u16) {
    let leases = section(out, "LEASES (1)");
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    for part in [
        "1: LEASE ",
        " RH ",
        &format!("file={}(export/leased.doc)", hex(LEASED)),
        "client=smb:carol ",
        &format!("key={} ", "ab".repeat(16)),
        &format!("epoch={epoch} "),
        " v2",
    ] {
        assert!(l.contains(part), "lease line lacks {part:?}: {l}");
    }
    assert!(!l.contains("BREAKING"), "{l}");
}

fn check_json_bytes(v: &Json, b: &[u8], text: Option<&str>) {
    assert_eq!(v.get("hex").str(), hex(b));
    match text {
        Some(t) => assert_eq!(v.get("text").str(), t),
        None => assert!(!v.has("text"), "no text for non-printable bytes: {v:?}"),
    }
}

/// (client, start, flavour, type, access, length, end, to_eof, count) of a lock in the JSON.
type WantLock = (&'static str, u64, &'static str, &'static str, &'static str, u64, Option<u128>, bool, u128);

fn check_json_live(out: &str, canon: &[u8], epoch: u16) {
    let j = Json::parse(out);
    assert_eq!(j.get("schema_version").num(), unilock::store::schema::VERSION as u128);
    let locks = j.get("locks").arr();
    assert_eq!(locks.len(), 6);
    for (i, l) in locks.iter().enumerate() {
        assert_eq!(l.get("index").num(), i as u128 + 1);
    }
    let find = |client: &str, start: u64| -> &Json {
        let hits: Vec<&Json> = locks
            .iter()
            .filter(|l| l.get("client").get("text").str() == client && l.get("start").num() == start as u128)
            .collect();
        assert_eq!(hits.len(), 1, "one lock of {client} at {start}");
        hits[0]
    };
    let want: [WantLock; 6] = [
        ("nfs4:alice", 0, "POSIX", "EXCLUSIVE", "WRITE", 100, Some(99), false, 1),
        ("nfs4:alice", 200, "POSIX", "SHARED", "READ", TO_EOF, None, true, 1),
        ("nlm:bob", 10, "POSIX", "EXCLUSIVE", "WRITE", 5, Some(14), false, 1),
        ("smb:carol", 1000, "WINDOWS", "SHARED", "READ", 10, Some(1009), false, 2),
        ("smb:carol", 5000, "WINDOWS", "EXCLUSIVE", "WRITE", 0, None, false, 1),
        ("smb:carol", BIG, "WINDOWS", "EXCLUSIVE", "WRITE", 16, Some(BIG as u128 + 15), false, 1),
    ];
    for (client, start, flavour, kind, access, length, end, to_eof, count) in want {
        let l = find(client, start);
        assert_eq!(l.get("flavour").str(), flavour);
        assert_eq!(l.get("type").str(), kind);
        assert_eq!(l.get("access").str(), access);
        assert_eq!(l.get("length").num(), length as u128);
        match end {
            Some(e) => assert_eq!(l.get("end").num(), e),
            None => assert_eq!(l.get("end"), &Json::Null),
        }
        assert_eq!(l.get("to_eof").bool(), to_eof);
        assert_eq!(l.get("count").num(), count);
        let file = l.get("file");
        if client == "nfs4:alice" {
            check_json_bytes(file, PLAIN, Some("export/a.txt"));
            assert!(!file.has("canonical"));
            check_json_bytes(l.get("owner"), ALICE.owner, Some("pid 42"));
            assert_eq!(l.get("open_id").num(), 0);
        } else {
            check_json_bytes(file, canon, None);
            let c = file.get("canonical");
            assert_eq!(
                (c.get("dev").num(), c.get("inode").num(), c.get("generation").num()),
                (DEV as u128, INO as u128, GEN as u128)
            );
        }
        if client == "nlm:bob" {
            check_json_bytes(l.get("owner"), BOB.owner, None);
        }
        if client == "smb:carol" {
            check_json_bytes(l.get("owner"), CAROL.owner, Some("sess\"1\\"));
            assert_eq!(l.get("open_id").num(), 7);
        }
    }
    let leases = j.get("leases").arr();
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    check_json_bytes(l.get("file"), LEASED, Some("export/leased.doc"));
    check_json_bytes(l.get("client"), b"smb:carol", Some("smb:carol"));
    assert_eq!(l.get("key").str(), "ab".repeat(16));
    assert_eq!(l.get("kind").str(), "LEASE");
    assert_eq!(l.get("state").str(), "RH");
    assert_eq!(l.get("state_bits").num(), 3);
    assert_eq!(l.get("version").num(), 2);
    assert_eq!(l.get("epoch").num(), epoch as u128);
    assert!(!l.get("breaking").bool());
    assert!(!l.get("dir").bool());
    let clients: Vec<(&str, u128, u128)> = j
        .get("clients")
        .arr()
        .iter()
        .map(|c| {
            c.get("adapter").str();
            c.get("address").str();
            c.get("ttl_ms").num();
            (c.get("client").get("text").str(), c.get("locks").num(), c.get("leases").num())
        })
        .collect();
    assert_eq!(clients, [("nfs4:alice", 2, 0), ("nlm:bob", 1, 0), ("smb:carol", 4, 1)]);
    let g = j.get("grace");
    assert!(!g.get("active").bool());
    assert!(g.get("expected_clients").arr().is_empty());
    assert_eq!(g.get("deadline_unix_ms"), &Json::Null);
    assert_eq!((g.get("prev_locks").num(), g.get("prev_leases").num()), (0, 0));
}

fn check_grace(db: &str, expired: bool) {
    let out = stat_ok(&["--grace", db]);
    assert!(out.starts_with("GRACE: active\n"), "{out}");
    assert!(out.contains("expected clients (3): nfs4:alice nlm:bob smb:carol\n"), "{out}");
    assert!(out.contains("pre-restart state: 7 locks, 1 lease (released at grace end unless reclaimed)\n"), "{out}");
    if expired {
        assert!(
            out.contains("expired at 1970-01-01T00:00:01.000Z, ends when the server next runs its timers"),
            "{out}"
        );
    } else {
        let rem = out.lines().find(|l| l.contains("remaining: ")).unwrap_or_else(|| panic!("{out}"));
        let secs: f64 = rem.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(secs > 0.0 && secs <= 600.0, "{rem}");
    }
    assert!(!out.contains("LOCKS"), "--grace shows only grace: {out}");
    let j = Json::parse(&stat_ok(&["--json", "--grace", db]));
    assert!(!j.has("locks") && !j.has("leases") && !j.has("clients"));
    let g = j.get("grace");
    assert!(g.get("active").bool());
    let expected: Vec<&str> = g.get("expected_clients").arr().iter().map(Json::str).collect();
    assert_eq!(expected, ["nfs4:alice", "nlm:bob", "smb:carol"]);
    assert_eq!((g.get("prev_locks").num(), g.get("prev_leases").num()), (7, 1));
    assert_eq!(g.get("expired").bool(), expired);
    if expired {
        assert_eq!(g.get("remaining_ms").num(), 0);
        assert_eq!(g.get("deadline_unix_ms").num(), 1000);
    } else {
        let rem = g.get("remaining_ms").num();
        assert!(rem > 0 && rem <= 600_000, "{rem}");
    }
}

#[test]
fn lists_a_live_database_then_the_grace_period_after_a_restart() {
    let dir = TempDir::new("live");
    let db_path = dir.path("unilock.db");
    let db = db_path.to_str().unwrap();
    {
        let m = manager(&db_path);
        let (canon, epoch) = populate(&m);
        // The server is live: the database is in WAL mode, with its -wal and -shm files.
        assert!(dir.listing().contains(&"unilock.db-wal".to_string()), "{:?}", dir.listing());

        let text = stat_ok(&[db]);
        check_text_locks(&text, &canon);
        check_text_leases(&text, epoch);
        let clients = section(&text, "CLIENTS (3)");
        one_line(&clients, &["1: ", "client=nfs4:alice ", "ttl_ms=0 ", "locks=2 ", "leases=0"]);
        one_line(&clients, &["2: ", "client=nlm:bob ", "locks=1 ", "leases=0"]);
        one_line(&clients, &["3: ", "client=smb:carol ", "locks=4 ", "leases=1"]);
        assert!(text.contains("\nGRACE: inactive\n"), "{text}");
        // Section options select sections.
        let only = stat_ok(&["--locks", db]);
        assert!(only.starts_with("LOCKS (6)\n") && !only.contains("LEASES") && !only.contains("GRACE"), "{only}");
        let two = stat_ok(&["--leases", "--clients", db]);
        assert!(two.starts_with("LEASES (1)\n") && two.contains("\nCLIENTS (3)\n") && !two.contains("LOCKS"), "{two}");

        check_json_live(&stat_ok(&["--json", db]), &canon, epoch);

        // The inspector changed nothing: the server still sees and works on its state.
        m.unlock(PLAIN, &ALICE, Flavour::Posix, 0, 100).unwrap();
        assert!(stat_ok(&["--locks", db]).starts_with("LOCKS (5)\n"));
        m.lock(PLAIN, &ALICE, &req(Flavour::Posix, LockType::Exclusive, 0, 100)).unwrap();
        assert!(stat_ok(&["--locks", db]).starts_with("LOCKS (6)\n"));
    } // the server stops

    {
        // The restart finds the state: a grace period, recorded in the database.
        let m = manager(&db_path);
        assert!(m.grace_status().0);
        let out = stat_ok(&[db]);
        assert!(out.starts_with("LOCKS (0)\n"), "live state moved to the pre-restart tables: {out}");
        check_grace(db, false);
    } // the server stops during grace

    // No server: the database has no -wal/-shm, and reading it must not create them.
    assert_eq!(dir.listing(), ["unilock.db"]);
    check_grace(db, false);
    assert_eq!(dir.listing(), ["unilock.db"], "unilock-stat created files next to an idle database");

    // A deadline in the past: grace ends when a server next runs its timers.
    {
        let c = rusqlite::Connection::open(&db_path).unwrap();
        c.execute("UPDATE grace SET deadline_unix_ms = 1000", []).unwrap();
    }
    check_grace(db, true);

    // A database from a newer library is refused.
    {
        let c = rusqlite::Connection::open(&db_path).unwrap();
        c.execute_batch(&format!("PRAGMA user_version = {}", unilock::store::schema::VERSION + 1)).unwrap();
    }
    let o = stat(&[db]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stderr.contains("newer"), "{}", o.stderr);
    assert!(o.stdout.is_empty());
}

#[test]
fn error_exits() {
    let dir = TempDir::new("errors");

    // A missing file is an error and is not created.
    let missing = dir.path("missing.db");
    let o = stat(&[&missing]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.starts_with("unilock-stat: ") && o.stderr.contains("missing.db"), "{}", o.stderr);
    assert!(o.stdout.is_empty());
    assert!(dir.listing().is_empty(), "created {:?}", dir.listing());

    // A corrupt file.
    let corrupt = dir.path("corrupt.db");
    std::fs::write(&corrupt, "this is not a SQLite database\n".repeat(200)).unwrap();
    let o = stat(&[&corrupt]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not a database"), "{}", o.stderr);
    assert!(o.stdout.is_empty());

    // An empty file, and a SQLite database of something else.
    let empty = dir.path("empty.db");
    std::fs::write(&empty, "").unwrap();
    let o = stat(&[&empty]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not a unilock database"), "{}", o.stderr);
    let other = dir.path("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE t(x)").unwrap();
    let o = stat(&[&other]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not a unilock database"), "{}", o.stderr);

    // A directory.
    let o = stat(&[&dir.0]);
    assert_eq!(o.code, 1, "{}", o.stderr);

    // Usage errors: exit 2, usage on stderr, nothing on stdout.
    let db = dir.path("x.db");
    let db = db.to_str().unwrap();
    for args in [&[][..], &["--json"][..], &["--bogus", db][..], &[db, db][..], &["-x", db][..]] {
        let o = stat(args);
        assert_eq!(o.code, 2, "{args:?}");
        assert!(o.stderr.contains("usage: unilock-stat"), "{args:?}: {}", o.stderr);
        assert!(o.stdout.is_empty());
    }
    // Help and version.
    let o = stat(&["--help"]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.starts_with("usage: unilock-stat"));
    let o = stat(&["--version"]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.starts_with(&format!("unilock-stat {}", env!("CARGO_PKG_VERSION"))), "{}", o.stdout);
    // A path may start with '-' after "--".
    let o = stat(&["--", "-not-there.db"]);
    assert_eq!(o.code, 1);
    assert!(!Path::new("-not-there.db").exists());
}
