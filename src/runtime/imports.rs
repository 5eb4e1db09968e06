//! Which imports a function may have: a pure policy over import names, checked
//! at load so that a component asking for more than the sandbox offers is
//! refused with the name of what it asked for, before it ever runs.
//!
//! Allowed are the WASI 0.2 interfaces that programs compiled for
//! `wasm32-wasip2` import (clocks, random, stdio, exit, and the filesystem and
//! socket interfaces their standard library links in), outgoing `wasi:http`,
//! and the host interface of our own world. The filesystem and socket
//! interfaces are linked but powerless: no directory is preopened and every
//! address and name lookup is denied (see `host`); outgoing HTTP reaches only
//! the function's allowed hosts (see `outbound`). Everything else, serving
//! HTTP or another vendor's interface, is refused.

/// The WASI 0.2 interfaces the sandbox implements, as `package/interface`.
const WASI_INTERFACES: &[&str] = &[
    "cli/environment",
    "cli/exit",
    "cli/stdin",
    "cli/stdout",
    "cli/stderr",
    "cli/terminal-input",
    "cli/terminal-output",
    "cli/terminal-stdin",
    "cli/terminal-stdout",
    "cli/terminal-stderr",
    "clocks/monotonic-clock",
    "clocks/wall-clock",
    "filesystem/preopens",
    "filesystem/types",
    "http/outgoing-handler",
    "http/types",
    "io/error",
    "io/poll",
    "io/streams",
    "random/insecure",
    "random/insecure-seed",
    "random/random",
    "sockets/instance-network",
    "sockets/ip-name-lookup",
    "sockets/network",
    "sockets/tcp",
    "sockets/tcp-create-socket",
    "sockets/udp",
    "sockets/udp-create-socket",
];

/// The WASI version family the linker provides (any `0.2.x`).
const WASI_VERSION_FAMILY: &str = "0.2.";

/// Interfaces of our own world a guest may import.
const HANDLER_INTERFACES: &[&str] = &["handler/host", "handler/types"];

/// The `switchyard:handler` version family implemented (any `0.1.x`).
const HANDLER_VERSION_FAMILY: &str = "0.1.";

/// Checks one top-level import name; the error says why it is refused.
pub(crate) fn check_import(name: &str) -> Result<(), String> {
    let Some((namespace, rest)) = name.split_once(':') else {
        return Err("only WASI 0.2 and switchyard:handler@0.1 interfaces can be imported".into());
    };
    let (path, version) = match rest.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (rest, None),
    };
    let (interfaces, family, what) = match namespace {
        "wasi" => (WASI_INTERFACES, WASI_VERSION_FAMILY, "WASI 0.2"),
        "switchyard" => (
            HANDLER_INTERFACES,
            HANDLER_VERSION_FAMILY,
            "switchyard:handler@0.1",
        ),
        _ => {
            return Err(format!(
                "the `{namespace}` namespace is not provided: only WASI 0.2 and switchyard:handler@0.1 interfaces can be imported"
            ));
        }
    };
    if !interfaces.contains(&path) {
        return Err(format!(
            "not one of the {what} interfaces the sandbox provides"
        ));
    }
    match version {
        Some(version) if version.starts_with(family) => Ok(()),
        Some(version) => Err(format!("version {version} is not provided, only {what}")),
        None => Err(format!(
            "an unversioned import is ambiguous, only {what} is provided"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_interfaces_of_the_0_2_family_are_allowed() {
        for name in [
            "wasi:io/streams@0.2.0",
            "wasi:cli/stderr@0.2.6",
            "wasi:sockets/tcp@0.2.3",
            "wasi:filesystem/preopens@0.2.4",
        ] {
            assert_eq!(check_import(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn the_handler_host_interface_is_allowed() {
        assert_eq!(check_import("switchyard:handler/host@0.1.0"), Ok(()));
        assert_eq!(check_import("switchyard:handler/types@0.1.3"), Ok(()));
    }

    #[test]
    fn other_interfaces_namespaces_and_versions_are_refused() {
        for name in [
            "wasi:http/incoming-handler@0.2.0",
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:io/streams@0.3.0",
            "wasi:io/streams",
            "switchyard:handler/host@1.0.0",
            "switchyard:admin/secrets@0.1.0",
            "acme:db/query@1.0.0",
            "fd_write",
        ] {
            assert!(check_import(name).is_err(), "{name} must be refused");
        }
    }

    #[test]
    fn refusal_explains_what_is_provided() {
        let reason = check_import("acme:db/query@1.0.0").unwrap_err();
        assert!(reason.contains("`acme` namespace"), "{reason}");
    }
}
