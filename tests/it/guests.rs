//! Builds the guest components in `guests/` once per test run and hands out
//! their paths.
//!
//! The guests are their own cargo workspace, compiled for `wasm32-wasip2`;
//! the target is added with rustup when it is missing. A failure panics with
//! the command that failed, so the fix is obvious from the test output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The WebAssembly target the guests are built for.
const TARGET: &str = "wasm32-wasip2";

/// Path of the built component of guest `name` (a member of `guests/`).
pub fn path(name: &str) -> PathBuf {
    // Cargo names a library's output after its crate, `-` made `_`.
    let path = built_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "guest `{name}` was not built: no {}",
        path.display()
    );
    path
}

/// The bytes of the built component of guest `name`.
pub fn bytes(name: &str) -> Vec<u8> {
    let path = path(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn built_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests");
    ensure_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let command = format!(
        "cargo build --release --target {TARGET} (in {})",
        workspace.display()
    );
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET])
        .current_dir(&workspace)
        // The guests have their own target directory and flags: settings meant
        // for the host build must not leak into theirs.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .unwrap_or_else(|error| panic!("cannot run `{command}`: {error}"));
    assert!(
        status.success(),
        "building the guests failed: `{command}` exited with {status}"
    );
    workspace.join("target").join(TARGET).join("release")
}

/// Adds the wasm target with rustup when the toolchain lacks it.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let installed = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| {
            let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
            Path::new(&sysroot)
                .join("lib")
                .join("rustlib")
                .join(TARGET)
                .is_dir()
        })
        .unwrap_or(false);
    if installed {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .unwrap_or_else(|error| panic!("cannot run `rustup target add {TARGET}`: {error}"));
    assert!(
        status.success(),
        "`rustup target add {TARGET}` exited with {status}"
    );
}

/// A component of the handler world (`wit/handler.wit`) made from a core module
/// written in WAT, for behaviour no compiled guest produces. The module exports
/// `memory`, `cabi_realloc`, `handle` and `handle-batch` with their canonical ABI
/// signatures; it may import nothing.
#[allow(
    dead_code,
    reason = "the benchmarks share this file and build no such guest"
)]
pub fn hand_written(core_wat: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::new();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    let (package, _) = resolve
        .push_path(&wit)
        .unwrap_or_else(|error| panic!("cannot read {}: {error:#}", wit.display()));
    let world = resolve
        .select_world(&[package], Some("handler"))
        .expect("the handler world");
    let mut module = wat::parse_str(core_wat).unwrap_or_else(|error| panic!("bad WAT: {error}"));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed the world");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|error| panic!("not a component of the handler world: {error:#}"))
}

/// The Python handler `guests/python/{name}.py` made a component with componentize-py
/// (from the test environment that scripts/test.sh installs), once per run.
pub fn python(name: &str) -> PathBuf {
    let venv = std::env::var_os("SWITCHYARD_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"));
    let tool = venv.join("bin/componentize-py");
    built_once("python", name, &tool, |out| {
        let mut c = Command::new(&tool);
        c.args([
            "-d",
            "../../wit",
            "-w",
            "handler",
            "componentize",
            name,
            "-p",
            ".",
        ])
        .arg("-o")
        .arg(out);
        c
    })
}

/// The JavaScript handler `guests/js/{name}.js` made a component with componentize-js
/// (from `guests/js/node_modules`, which scripts/test.sh installs), once per run.
pub fn js(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/js");
    let tool = dir.join("node_modules/.bin/componentize-js");
    built_once("js", name, &tool, |out| {
        let mut c = Command::new(&tool);
        c.arg(format!("{name}.js"))
            .args(["--wit", "../../wit", "--world-name", "handler", "-o"])
            .arg(out);
        c
    })
}

/// Runs `command` (made for the output path) in `guests/{language}` unless it ran for
/// `name` already; fails, naming the fix, when `tool` is missing.
fn built_once(
    language: &str,
    name: &str,
    tool: &Path,
    command: impl FnOnce(&Path) -> Command,
) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("guests-{language}"))
        .join(format!("{name}.wasm"));
    // Held while building, so that tests wanting the same guest wait for one build.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&out) {
        return out;
    }
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/test.sh, which installs it",
        tool.display()
    );
    std::fs::create_dir_all(out.parent().unwrap()).expect("create the guests' output dir");
    let mut command = command(&out);
    let status = command
        .current_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("guests")
                .join(language),
        )
        .status()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", tool.display()));
    assert!(
        status.success(),
        "building the {language} guest {name} failed: {command:?} exited with {status}"
    );
    built.push(out.clone());
    out
}
