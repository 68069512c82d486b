//! Link options for the release `tern` binary that shrink what an idle server keeps
//! resident (docs/benchmarks/README.md, "Idle RSS: code layout, ..."). Nothing here changes
//! what the code does; other targets, profiles and binaries link as cargo's defaults have
//! them.
//!
//! - `--symbol-ordering-file=build/code-layout.txt`: the functions a running server
//!   executes, packed at the start of the code (build/collect-code-layout.sh writes the
//!   list). The kernel maps code 64 KiB around each page fault, so scattered functions
//!   made nearly all of the 4.7 MB resident. Needs lld, the linker of this target since
//!   Rust 1.90; names missing from the binary are ignored.
//! - `-z pack-relative-relocs`: the position-independent binary's relocations as a
//!   bitmap (DT_RELR) instead of 190 KB of tables read at every start. Needs glibc 2.36
//!   where the binary runs, so only when building on such a glibc for itself.
//!
//! `TERN_CODE_LAYOUT=off` leaves both out (for another linker, or to compare).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/code-layout.txt");
    println!("cargo:rerun-if-env-changed=TERN_CODE_LAYOUT");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TERN_CODE_LAYOUT") == "off"
        || var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("HOST") != var("TARGET")
    {
        return;
    }
    let layout = Path::new(&var("CARGO_MANIFEST_DIR")).join("build/code-layout.txt");
    if layout.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=tern=-Wl,--symbol-ordering-file={}",
            layout.display()
        );
        println!("cargo:rustc-link-arg-bin=tern=-Wl,--no-warn-symbol-ordering");
    }
    if host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=tern=-Wl,-z,pack-relative-relocs");
    }
}

/// The version of the glibc this build script runs on (the target's, as HOST == TARGET).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or("0.0")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// Built elsewhere (macOS, musl): main() returned before asking.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn host_glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}
