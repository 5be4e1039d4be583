//! A small blocking client for etcd's v3 API as served by its JSON gateway (etcd 3.4: `/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/*`, `/v3/watch`; keys and values in base64, 64-bit integers as strings).
//!
//! Why not the `etcd-client` crate: it is async (tokio + tonic) and would put a runtime thread in
//! every process that opens a handle (every smbd child), and it needs `protoc` at build time. The
//! gateway costs a JSON encoding per call, measured at a few microseconds against a round trip of
//! hundreds, and needs nothing but a socket: plain HTTP/1.1 over one kept-alive connection, written
//! here (Content-Length and chunked bodies only). Plain HTTP only: no TLS (see the README).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub type Res<T> = std::result::Result<T, String>;

/// One key as etcd returns it.
#[derive(Clone, Debug, Default)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A comparison of a transaction.
pub enum Cmp<'a> {
    /// The key's create revision equals this (0: the key does not exist).
    Created(&'a [u8], i64),
    /// The key's mod revision equals this.
    Modified(&'a [u8], i64),
}

/// An operation of a transaction.
pub enum Op<'a> {
    Put(&'a [u8], &'a [u8], i64),
    Delete(&'a [u8]),
    /// A range `[key, end)` (`end` empty: the key alone).
    Range(&'a [u8], &'a [u8]),
}

/// What a transaction answered: which branch ran, and the keys of its ranges, in order.
#[derive(Debug, Default)]
pub struct TxnResult {
    pub succeeded: bool,
    pub ranges: Vec<Vec<Kv>>,
    pub revision: i64,
}

/// The end of the range of every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut e = prefix.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xFF {
            e.push(last + 1);
            return e;
        }
    }
    vec![0]
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub fn unb64(s: &str) -> Res<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for ch in s.bytes() {
        let v = match ch {
            b'A'..=b'Z' => ch - b'A',
            b'a'..=b'z' => ch - b'a' + 26,
            b'0'..=b'9' => ch - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return Err(format!("bad base64 from etcd: {s:?}")),
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes_of(v: &Value) -> Res<Vec<u8>> {
    match v {
        Value::String(s) => unb64(s),
        Value::Null => Ok(Vec::new()),
        _ => Err("etcd: a key or value is not a string".into()),
    }
}

pub fn kv_of(v: &Value) -> Res<Kv> {
    Ok(Kv {
        key: bytes_of(&v["key"])?,
        value: bytes_of(&v["value"])?,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    })
}

fn kvs_of(v: &Value) -> Res<Vec<Kv>> {
    match &v["kvs"] {
        Value::Array(a) => a.iter().map(kv_of).collect(),
        _ => Ok(Vec::new()),
    }
}

/// One HTTP/1.1 connection to an endpoint.
pub struct Conn {
    r: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    pub fn connect(endpoint: &str, timeout: Duration) -> Res<Conn> {
        let host = endpoint.trim().trim_start_matches("http://").trim_end_matches('/').to_string();
        if host.starts_with("https://") {
            return Err(format!("{endpoint}: TLS endpoints are not supported (use http://)"));
        }
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
            .map_err(|e| format!("{endpoint}: {e}"))?
            .next()
            .ok_or_else(|| format!("{endpoint}: no address"))?;
        let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{endpoint}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        Ok(Conn { r: BufReader::with_capacity(64 * 1024, s), host })
    }

    /// Sends a POST; the response head is read by `head`.
    pub fn send(&mut self, path: &str, body: &[u8]) -> Res<()> {
        let mut req = Vec::with_capacity(body.len() + 160);
        write!(
            req,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        req.extend_from_slice(body);
        self.r.get_mut().write_all(&req).map_err(|e| format!("etcd {}: {e}", self.host))
    }

    fn line(&mut self) -> Res<String> {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).map_err(|e| format!("etcd {}: {e}", self.host))?;
        if n == 0 {
            return Err(format!("etcd {}: connection closed", self.host));
        }
        Ok(l.trim_end().to_string())
    }

    /// Reads a response head: (status, chunked, content length, keep-alive).
    pub fn head(&mut self) -> Res<(u16, bool, Option<usize>, bool)> {
        let status_line = self.line()?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("etcd {}: bad status line {status_line:?}", self.host))?;
        let (mut chunked, mut len, mut keep) = (false, None, true);
        loop {
            let l = self.line()?;
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "content-length" => len = v.parse().ok(),
                "connection" => keep = !v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        Ok((status, chunked, len, keep))
    }

    /// The next chunk of a chunked body (`None` at its end).
    pub fn chunk(&mut self) -> Res<Option<Vec<u8>>> {
        let l = self.line()?;
        let n = usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("etcd {}: bad chunk size {l:?}", self.host))?;
        let mut b = vec![0; n];
        self.r.read_exact(&mut b).map_err(|e| format!("etcd {}: {e}", self.host))?;
        self.line_end()?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(b))
    }

    fn line_end(&mut self) -> Res<()> {
        let mut crlf = [0u8; 2];
        self.r.read_exact(&mut crlf).map_err(|e| format!("etcd {}: {e}", self.host))?;
        Ok(())
    }

    /// A whole unary call: the response body as JSON; an HTTP error carries etcd's message.
    pub fn call(&mut self, path: &str, body: &Value) -> Res<(Value, bool)> {
        self.send(path, body.to_string().as_bytes())?;
        let (status, chunked, len, keep) = self.head()?;
        let mut b = Vec::new();
        if chunked {
            while let Some(c) = self.chunk()? {
                b.extend_from_slice(&c);
            }
        } else if let Some(n) = len {
            b.resize(n, 0);
            self.r.read_exact(&mut b).map_err(|e| format!("etcd {}: {e}", self.host))?;
        } else {
            self.r.read_to_end(&mut b).map_err(|e| format!("etcd {}: {e}", self.host))?;
        }
        let v: Value = serde_json::from_slice(&b)
            .map_err(|e| format!("etcd {}: bad JSON ({e}): {}", self.host, String::from_utf8_lossy(&b)))?;
        if status != 200 {
            let msg = v["message"].as_str().or(v["error"].as_str()).unwrap_or("");
            return Err(format!("etcd {}: HTTP {status}: {msg}", self.host));
        }
        Ok((v, keep && len.is_some() || chunked))
    }
}

/// A client for unary calls over one kept-alive connection, trying each endpoint in turn.
pub struct Client {
    pub endpoints: Vec<String>,
    pub timeout: Duration,
    conn: parking_lot::Mutex<(Option<Conn>, usize)>,
}

impl Client {
    pub fn new(endpoints: &str, timeout: Duration) -> Res<Client> {
        let endpoints: Vec<String> =
            endpoints.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if endpoints.is_empty() {
            return Err("no etcd endpoints".into());
        }
        Ok(Client { endpoints, timeout, conn: parking_lot::Mutex::new((None, 0)) })
    }

    /// Connects to the first endpoint that answers, starting after the last one used.
    pub fn connect_any(&self, start: usize) -> Res<(Conn, usize)> {
        let mut errs = Vec::new();
        for i in 0..self.endpoints.len() {
            let k = (start + i) % self.endpoints.len();
            match Conn::connect(&self.endpoints[k], self.timeout) {
                Ok(c) => return Ok((c, k)),
                Err(e) => errs.push(e),
            }
        }
        Err(errs.join("; "))
    }

    /// One call. A request that fails on a connection that was already open is sent once more on a
    /// fresh connection when no byte of its answer arrived (the server may have closed an idle
    /// connection): callers make every request safe to repeat.
    pub fn call(&self, path: &str, body: &Value) -> Res<Value> {
        let mut g = self.conn.lock();
        for attempt in 0..2 {
            let reused = g.0.is_some();
            let mut conn = match g.0.take() {
                Some(c) => c,
                None => {
                    let start = g.1;
                    let (c, k) = self.connect_any(if attempt == 0 { start } else { start + 1 })?;
                    g.1 = k;
                    c
                }
            };
            match conn.call(path, body) {
                Ok((v, keep)) => {
                    if keep {
                        g.0 = Some(conn);
                    }
                    return Ok(v);
                }
                Err(e) if e.contains("HTTP ") => {
                    // etcd answered (an error of its own): the connection is fine.
                    g.0 = Some(conn);
                    return Err(e);
                }
                Err(e) => {
                    if !reused || attempt == 1 {
                        // Next time, start with another member.
                        g.1 += 1;
                        return Err(e);
                    }
                }
            }
        }
        Err("etcd: no answer".into())
    }

    pub fn range(&self, key: &[u8], end: &[u8], keys_only: bool) -> Res<Vec<Kv>> {
        let mut b = json!({ "key": b64(key) });
        if !end.is_empty() {
            b["range_end"] = json!(b64(end));
        }
        if keys_only {
            b["keys_only"] = json!(true);
        }
        kvs_of(&self.call("/v3/kv/range", &b)?)
    }

    pub fn txn(&self, cmp: &[Cmp], then: &[Op], otherwise: &[Op]) -> Res<TxnResult> {
        let c: Vec<Value> = cmp
            .iter()
            .map(|c| match c {
                Cmp::Created(k, r) => {
                    json!({"target": "CREATE", "result": "EQUAL", "key": b64(k), "create_revision": r.to_string()})
                }
                Cmp::Modified(k, r) => {
                    json!({"target": "MOD", "result": "EQUAL", "key": b64(k), "mod_revision": r.to_string()})
                }
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<Value> {
            ops.iter()
                .map(|o| match o {
                    Op::Put(k, v, lease) if *lease != 0 => {
                        json!({"request_put": {"key": b64(k), "value": b64(v), "lease": lease.to_string()}})
                    }
                    Op::Put(k, v, _) => json!({"request_put": {"key": b64(k), "value": b64(v)}}),
                    Op::Delete(k) => json!({"request_delete_range": {"key": b64(k)}}),
                    Op::Range(k, &[]) => json!({"request_range": {"key": b64(k)}}),
                    Op::Range(k, e) => json!({"request_range": {"key": b64(k), "range_end": b64(e)}}),
                })
                .collect()
        };
        let v = self.call("/v3/kv/txn", &json!({"compare": c, "success": ops(then), "failure": ops(otherwise)}))?;
        let mut r = TxnResult {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            revision: int(&v["header"]["revision"]),
            ranges: Vec::new(),
        };
        if let Value::Array(a) = &v["responses"] {
            for x in a {
                if x.get("response_range").is_some() {
                    r.ranges.push(kvs_of(&x["response_range"])?);
                }
            }
        }
        Ok(r)
    }

    /// Grants a lease of `ttl_s` seconds; returns its id.
    pub fn grant(&self, ttl_s: u64) -> Res<i64> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl_s.to_string() }))?;
        if let Some(e) = v["error"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!("etcd: lease grant: {e}"));
        }
        match int(&v["ID"]) {
            0 => Err("etcd: lease grant answered no id".into()),
            id => Ok(id),
        }
    }

    /// Renews a lease; returns its TTL now (0 or less: the lease is gone).
    pub fn keepalive(&self, id: i64) -> Res<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        if v.get("error").is_some() {
            return Err(format!("etcd: keepalive: {}", v["error"]));
        }
        Ok(int(&v["result"]["TTL"]))
    }

    pub fn revoke(&self, id: i64) -> Res<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() })).map(|_| ())
    }
}

/// A watch stream on some prefixes (its own connection; blocking reads).
pub struct Watch {
    conn: Conn,
    buf: Vec<u8>,
}

impl Watch {
    /// Opens a watch on every key under each prefix, from now on.
    /// Reads block until an event (no timeout): `stopper` gives a handle whose `shutdown` ends them.
    pub fn open(client: &Client, prefixes: &[&[u8]]) -> Res<Watch> {
        let (mut conn, _) = client.connect_any(0)?;
        let mut body = String::new();
        for p in prefixes {
            body.push_str(&json!({"create_request": {"key": b64(p), "range_end": b64(&prefix_end(p))}}).to_string());
        }
        conn.send("/v3/watch", body.as_bytes())?;
        let (status, chunked, _, _) = conn.head()?;
        if status != 200 || !chunked {
            return Err(format!("etcd: watch answered HTTP {status}"));
        }
        conn.r.get_ref().set_read_timeout(None).map_err(|e| e.to_string())?;
        Ok(Watch { conn, buf: Vec::new() })
    }

    /// A handle on the stream's socket: `shutdown(Both)` on it ends a blocked `next`.
    pub fn stopper(&self) -> Res<TcpStream> {
        self.conn.r.get_ref().try_clone().map_err(|e| e.to_string())
    }

    /// The next message of the stream (a JSON object).
    pub fn next_message(&mut self) -> Res<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let v: Value = serde_json::from_slice(line).map_err(|e| format!("etcd watch: bad JSON: {e}"))?;
                if v.get("error").is_some() {
                    return Err(format!("etcd watch: {}", v["error"]));
                }
                return Ok(v);
            }
            match self.conn.chunk()? {
                Some(c) => self.buf.extend_from_slice(&c),
                None => return Err("etcd watch: stream ended".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for n in 0..40usize {
            let b: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            assert_eq!(unb64(&b64(&b)).unwrap(), b, "length {n}");
        }
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"m/x"), "bS94");
        assert_eq!(b64(b"v"), "dg==");
        assert!(unb64("a!b").is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
