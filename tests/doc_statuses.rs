//! The header is the manual: every status an exported function returns by name in its body must be
//! named in its doc block in include/unilock.h (statuses that come from the engine's errors are
//! checked at run time: `make check` runs the C tests with UNILOCK_CHECK_STATUSES=1), and the header
//! defines no macro outside the `UNILOCK_` namespace.

use std::collections::{BTreeMap, BTreeSet};

fn statuses_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut s = text;
    while let Some(i) = s.find("UNILOCK_") {
        let tok: String =
            s[i..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        s = &s[i + tok.len().max(1)..];
        if tok == "UNILOCK_OK" || tok == "UNILOCK_PENDING" || tok.starts_with("UNILOCK_E_") {
            out.insert(tok);
        }
    }
    out
}

/// Function name → statuses named in its doc block.
fn header_docs(header: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut map = BTreeMap::new();
    let mut block = String::new();
    for line in header.lines() {
        let t = line.trim_start();
        if t.starts_with("/**") {
            block.clear();
        }
        if t.starts_with("/**") || t.starts_with('*') {
            block.push_str(t);
            block.push('\n');
            continue;
        }
        if let Some(rest) = t.strip_prefix("unilock_status unilock_") {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            map.insert(format!("unilock_{name}"), statuses_in(&block));
        }
        if !t.is_empty() {
            block.clear();
        }
    }
    map
}

/// Function name → statuses its Rust body returns by name (`unilock_status::UNILOCK_X`, `invalid()`,
/// `try_handle!` for misuse).
fn code_statuses() -> BTreeMap<String, BTreeSet<String>> {
    let mut map = BTreeMap::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i];
            let Some(pos) = l.find("extern \"C\" fn unilock_") else {
                i += 1;
                continue;
            };
            let name: String = l[pos + 14..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let mut body = String::new();
            let mut returns_status = false;
            while i < lines.len() {
                body.push_str(lines[i]);
                body.push('\n');
                if lines[i].contains("-> unilock_status") {
                    returns_status = true;
                }
                if lines[i] == "}" {
                    break;
                }
                i += 1;
            }
            if returns_status {
                let mut set: BTreeSet<String> =
                    statuses_in(&body).into_iter().filter(|s| body.contains(&format!("unilock_status::{s}"))).collect();
                if body.contains("::invalid()") || body.contains("try_ref!") || body.contains("try_bytes!") {
                    set.insert("UNILOCK_E_INVALID".into());
                }
                if body.contains("try_handle!") {
                    set.insert("UNILOCK_E_MISUSE".into());
                }
                set.remove("UNILOCK_E_INTERNAL");
                map.insert(name, set);
            }
            i += 1;
        }
    }
    map
}

#[test]
fn every_status_a_function_names_in_its_code_is_in_its_doc_block() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/unilock.h")).unwrap();
    let docs = header_docs(&header);
    let code = code_statuses();
    assert!(code.len() >= 30, "found only {} exported status functions", code.len());
    let mut missing = Vec::new();
    for (name, set) in &code {
        let Some(doc) = docs.get(name) else {
            missing.push(format!("{name}: no doc block in the header"));
            continue;
        };
        for s in set {
            if !doc.contains(s) {
                missing.push(format!("{name} returns {s} but its doc block does not name it"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_header_defines_only_unilock_macros_and_names() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/unilock.h")).unwrap();
    let mut bad = Vec::new();
    for line in header.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            let rest = rest.trim_start();
            if let Some(def) = rest.strip_prefix("define") {
                let name: String =
                    def.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.starts_with("UNILOCK_") {
                    bad.push(name);
                }
            }
        }
        for kw in ["typedef struct ", "struct ", "typedef enum ", "enum "] {
            if let Some(rest) = t.strip_prefix(kw) {
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty()
                    && name != "unilock"
                    && !name.starts_with("unilock_")
                    && !name.starts_with("UNILOCK_")
                {
                    bad.push(name);
                }
            }
        }
    }
    assert!(bad.is_empty(), "names outside the unilock namespace in unilock.h: {bad:?}");
}
