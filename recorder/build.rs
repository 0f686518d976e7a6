//! Generates the bindings to the plugin API of the QEMU the project provisioned
//! (`$QTRACE_QEMU_DIR/include/qemu-plugin.h`), never to a copied header: the
//! recorder must match the QEMU it is loaded into.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn qemu_dir() -> PathBuf {
    if let Some(dir) = env::var_os("QTRACE_QEMU_DIR") {
        return PathBuf::from(dir);
    }
    let cache = env::var_os("QTRACE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cache/qtrace")
        });
    cache.join("qemu-10.0.2")
}

fn main() {
    println!("cargo:rerun-if-env-changed=QTRACE_QEMU_DIR");
    println!("cargo:rerun-if-env-changed=QTRACE_CACHE");
    println!("cargo:rerun-if-changed=build.rs");
    let header = qemu_dir().join("include/qemu-plugin.h");
    if !header.is_file() {
        panic!(
            "{} not found: provision QEMU with scripts/setup.sh (or point QTRACE_QEMU_DIR at a QEMU 10.x built with --enable-plugins)",
            header.display()
        );
    }
    println!("cargo:rerun-if-changed={}", header.display());

    // The header includes <glib.h>.
    let glib = Command::new("pkg-config")
        .args(["--cflags", "glib-2.0"])
        .output()
        .expect("pkg-config runs (apt-get install pkg-config libglib2.0-dev)");
    assert!(
        glib.status.success(),
        "pkg-config finds glib-2.0 (apt-get install libglib2.0-dev)"
    );
    let cflags = String::from_utf8_lossy(&glib.stdout).to_string();

    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_args(cflags.split_whitespace())
        .allowlist_function("qemu_plugin_.*")
        .allowlist_type("qemu_plugin_.*|qemu_info_t")
        .allowlist_var("QEMU_PLUGIN_.*")
        .default_enum_style(bindgen::EnumVariation::Rust {
            non_exhaustive: false,
        })
        .layout_tests(false)
        .generate()
        .expect("bindgen reads qemu-plugin.h");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("bindings written");

    // QEMU's API functions resolve from the QEMU binary when the plugin loads.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,undefs");
}
