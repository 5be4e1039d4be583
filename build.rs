//! Generates `include/unilock.h` with cbindgen and `pkgconfig/unilock.pc` from its template, and gives
//! the shared object its SONAME and export list.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let major: u32 = env::var("CARGO_PKG_VERSION_MAJOR").unwrap().parse().unwrap();
    let minor: u32 = env::var("CARGO_PKG_VERSION_MINOR").unwrap().parse().unwrap();
    let patch: u32 = env::var("CARGO_PKG_VERSION_PATCH").unwrap().parse().unwrap();

    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=pkgconfig/unilock.pc.in");
    println!("cargo:rerun-if-changed=unilock.map");

    // Only `unilock_*` is exported, and the shared object is libunilock.so.0.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libunilock.so.{major}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", dir.join("unilock.map").display());
    }

    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let number = major * 1_000_000 + minor * 1_000 + patch;
    config.after_includes = Some(format!(
        "\n/** The version of this header, as a string. Compare `unilock_libversion()`. */\n\
         #define UNILOCK_VERSION \"{version}\"\n\
         /** The version of this header as X*1000000 + Y*1000 + Z. Compare `unilock_libversion_number()`. */\n\
         #define UNILOCK_VERSION_NUMBER {number}\n"
    ));
    let header = dir.join("include/unilock.h");
    match cbindgen::Builder::new().with_crate(&dir).with_config(config).generate() {
        Ok(b) => {
            b.write_to_file(&header);
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    }

    let template = fs::read_to_string(dir.join("pkgconfig/unilock.pc.in")).expect("pkgconfig/unilock.pc.in");
    let pc = template.replace("@VERSION@", &version);
    let out = dir.join("pkgconfig/unilock.pc");
    if fs::read_to_string(&out).ok().as_deref() != Some(pc.as_str()) {
        fs::write(&out, pc).expect("write pkgconfig/unilock.pc");
    }
}
