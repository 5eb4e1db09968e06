//! `switchyard new`: a handler project to start from, in Rust, Python or JavaScript,
//! that builds into a component of the `switchyard:handler` world with one command.
//! Each project carries its own copy of the world (`wit/handler.wit`) and, for Python
//! and JavaScript, of the SDK module from `guests/`, so it builds on its own.

use std::path::{Path, PathBuf};

/// The world every handler is built against.
const WIT: &str = include_str!("../../wit/handler.wit");
const PYTHON_SDK: &str = include_str!("../../guests/python/switchyard.py");
const JS_SDK: &str = include_str!("../../guests/js/switchyard.js");
/// The componentize-js the JavaScript examples are built and tested with.
const COMPONENTIZE_JS: &str = "0.23.0";
/// The preview2-shim componentize-js imports without declaring it as a dependency.
const PREVIEW2_SHIM: &str = "0.25.0";
/// The componentize-py the Python examples are built and tested with.
const COMPONENTIZE_PY: &str = "0.25.1";

/// A language a handler can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
}

/// What [`create`] made.
#[derive(Debug)]
pub struct Scaffold {
    /// The command, run in the project's directory, that builds the component.
    pub build_command: String,
    /// Where the component is once built, relative to the project's directory.
    pub component: PathBuf,
}

/// Why a project could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` cannot name a handler: use lowercase letters, digits, `-` and `_`, starting with a letter"
    )]
    Name(String),
    #[error("{0} exists and is not empty: choose another name or --dir")]
    NotEmpty(PathBuf),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes a new handler project named `name` in `dir` (created; it must be empty if it
/// exists).
pub fn create(name: &str, language: Language, dir: &Path) -> Result<Scaffold, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid || name.len() > 64 {
        return Err(ScaffoldError::Name(name.into()));
    }
    if dir
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        return Err(ScaffoldError::NotEmpty(dir.into()));
    }
    let (files, made) = match language {
        Language::Rust => rust(name),
        Language::Python => python(name),
        Language::JavaScript => javascript(name),
    };
    for (path, text) in files {
        let path = dir.join(path);
        let written = std::fs::create_dir_all(path.parent().expect("files are in a directory"))
            .and_then(|()| std::fs::write(&path, text));
        written.map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(made)
}

type Files = Vec<(&'static str, String)>;

fn rust(name: &str) -> (Files, Scaffold) {
    let build = "cargo build --release --target wasm32-wasip2";
    let component = format!(
        "target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    );
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = {{ version = "0.61", default-features = false, features = ["macros", "realloc"] }}

# Small components: they are loaded, stored and instantiated often.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
# A panic aborts, which the router reports as a trap: a failed attempt.
panic = "abort"

# A project of its own, also when created inside another workspace.
[workspace]
"#
    );
    let lib = format!(
        r#"//! The `{name}` handler: a WebAssembly component of the `switchyard:handler` world.

wit_bindgen::generate!({{ path: "wit", world: "handler" }});

use switchyard::handler::host::{{config, log}};
// The world brings `Event`, `Error` and `BatchResult` in already.
use switchyard::handler::types::{{Body, ItemFailure, Level}};

struct Handler;

impl Guest for Handler {{
    /// One event. `Err(Error::Retryable(..))` has it delivered again after a backoff,
    /// `Err(Error::Fatal(..))` sends it to the dead-letter queue.
    fn handle(event: Event) -> Result<(), Error> {{
        let body = match &event.body {{
            Body::Text(text) => text.clone(),
            Body::Bytes(bytes) => format!("{{}} bytes", bytes.len()),
        }};
        let greeting = config("greeting").unwrap_or_else(|| "received".into());
        log(
            Level::Info,
            &format!("{name}: {{greeting}} {{}} from {{}}: {{body}}", event.id, event.topic),
        );
        Ok(())
    }}

    /// A batch from a queue or stream source: reports the events that failed.
    fn handle_batch(events: Vec<Event>) -> BatchResult {{
        let failures = events
            .into_iter()
            .enumerate()
            .filter_map(|(index, event)| {{
                Self::handle(event).err().map(|error| ItemFailure {{
                    index: index as u32,
                    error,
                }})
            }})
            .collect();
        BatchResult {{ failures }}
    }}
}}

export!(Handler);
"#
    );
    let files = vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", lib),
        ("wit/handler.wit", WIT.into()),
        (
            "README.md",
            readme(
                name,
                "Rust",
                "rustup target add wasm32-wasip2   # once",
                build,
                &component,
            ),
        ),
        (".gitignore", "/target\n".into()),
    ];
    (files, made(build, component))
}

fn python(name: &str) -> (Files, Scaffold) {
    let build = "componentize-py -d wit -w handler componentize app -o handler.wasm";
    let app = format!(
        r#""""The `{name}` handler: a WebAssembly component of the `switchyard:handler` world."""

import switchyard
from switchyard import log


def handle(event: switchyard.Event) -> None:
    """One event. Raise `switchyard.Retryable` to have it delivered again after a
    backoff, `switchyard.Fatal` to send it to the dead-letter queue."""
    greeting = switchyard.config("greeting", "received")
    log.info(f"{name}: {{greeting}} {{event.id}} from {{event.topic}}: {{event.body}}")


WitWorld = switchyard.world(handle)
"#
    );
    let files = vec![
        ("app.py", app),
        ("switchyard.py", PYTHON_SDK.into()),
        ("wit/handler.wit", WIT.into()),
        (
            "README.md",
            readme(
                name,
                "Python",
                &format!("pip install componentize-py=={COMPONENTIZE_PY}   # once"),
                build,
                "handler.wasm",
            ),
        ),
        (".gitignore", "*.wasm\n__pycache__/\n".into()),
    ];
    (files, made(build, "handler.wasm".into()))
}

fn javascript(name: &str) -> (Files, Scaffold) {
    let build = "npm install && npm run build";
    let app = format!(
        r#"// The `{name}` handler: a WebAssembly component of the `switchyard:handler` world.

import {{ config, handler, log }} from "./switchyard.js";

// One event. Throw `Retryable` (from ./switchyard.js) to have it delivered again after
// a backoff, `Fatal` to send it to the dead-letter queue.
export const {{ handle, handleBatch }} = handler((event) => {{
  const greeting = config("greeting", "received");
  log.info(`{name}: ${{greeting}} ${{event.id}} from ${{event.topic}}: ${{event.body}}`);
}});
"#
    );
    let package = format!(
        r#"{{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "componentize-js app.js --wit wit --world-name handler -o handler.wasm"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "{COMPONENTIZE_JS}",
    "@bytecodealliance/preview2-shim": "{PREVIEW2_SHIM}"
  }}
}}
"#
    );
    let files = vec![
        ("app.js", app),
        ("switchyard.js", JS_SDK.into()),
        ("package.json", package),
        ("wit/handler.wit", WIT.into()),
        (
            "README.md",
            readme(
                name,
                "JavaScript",
                "(Node.js 20 or later)",
                build,
                "handler.wasm",
            ),
        ),
        (".gitignore", "node_modules/\n*.wasm\n".into()),
    ];
    (files, made(build, "handler.wasm".into()))
}

fn made(build: &str, component: String) -> Scaffold {
    Scaffold {
        build_command: build.into(),
        component: component.into(),
    }
}

fn readme(name: &str, language: &str, setup: &str, build: &str, component: &str) -> String {
    format!(
        r#"# {name}

A Switchyard handler in {language}.

```sh
{setup}
{build}
```

makes `{component}`, a component of the `switchyard:handler` world (`wit/handler.wit`).
Run it on a server:

```sh
curl -X PUT localhost:8088/v1/functions/{name} -d '{{"module": "'$PWD/{component}'", "env": {{"greeting": "got"}}}}'
curl localhost:8088/v1/functions/{name}/invoke -d '{{"message": {{"hello": "world"}}}}'
```
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_holds_the_world_and_names_its_handler() {
        for language in [Language::Rust, Language::Python, Language::JavaScript] {
            let dir = tempfile::tempdir().unwrap();
            let made = create("hello-world", language, dir.path()).unwrap();
            let wit = std::fs::read_to_string(dir.path().join("wit/handler.wit")).unwrap();
            assert_eq!(wit, WIT);
            let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
            assert!(readme.contains(&made.build_command), "{language:?}");
        }
    }

    #[test]
    fn a_bad_name_or_a_used_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["Hello", "1st", "a b", "../x", ""] {
            let e = create(bad, Language::Rust, &dir.path().join("p")).unwrap_err();
            assert!(
                e.to_string().contains("cannot name a handler"),
                "{bad}: {e}"
            );
        }
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let e = create("ok", Language::Python, dir.path()).unwrap_err();
        assert!(e.to_string().contains("is not empty"), "{e}");
    }
}
