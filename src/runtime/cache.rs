//! The on-disk cache of compiled components, so a restart (or loading the same
//! module twice) does not compile again.
//!
//! An entry is keyed by the SHA-256 of the component's bytes and a hash of the
//! engine's precompile-compatibility settings (compiler, target features,
//! tunables, wasmtime version): a different engine simply misses. Each entry is
//! two files, `<key>.cwasm` (the serialized artifact) and `<key>.sha256` (its
//! digest). Files are written under temporary names and renamed into place, so
//! readers only ever see complete files, and a published artifact is never
//! modified in place (which matters because it is memory-mapped).
//!
//! On a hit the artifact's digest is checked before wasmtime maps it, and
//! wasmtime checks the header and engine compatibility itself. An entry that
//! fails either check is counted as rejected and replaced by a fresh
//! compilation; a corrupt cache never fails a load.

use crate::hex;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Counters of cache outcomes since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from a cached artifact.
    pub hits: u64,
    /// Loads that compiled because no entry existed (or no cache is configured).
    pub misses: u64,
    /// Entries found but refused (digest mismatch, incompatible or unreadable
    /// artifact) and recompiled.
    pub rejected: u64,
    /// Compiled artifacts that could not be written to the cache.
    pub write_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    write_errors: AtomicU64,
}

/// Where a load found its component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Cache,
    Compiled,
}

/// The compiled-component cache of one engine.
#[derive(Debug)]
pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
    counters: Counters,
}

impl ComponentCache {
    /// A cache in `dir` (created if missing), or none.
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> std::io::Result<ComponentCache> {
        if let Some(dir) = &dir {
            fs::create_dir_all(dir)?;
        }
        let mut hasher = DigestHasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        Ok(ComponentCache {
            dir,
            engine_key,
            counters: Counters::default(),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
        }
    }

    /// The component for `bytes`, from the cache when a valid entry exists,
    /// else compiled with `compile` (and then cached).
    pub(crate) fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, Source)> {
        let Some(dir) = &self.dir else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return Ok((compile()?, Source::Compiled));
        };
        let key = format!("{}-{}", hex(&Sha256::digest(bytes)), self.engine_key);
        let artifact = dir.join(format!("{key}.cwasm"));
        let digest = dir.join(format!("{key}.sha256"));
        match read_entry(engine, &artifact, &digest) {
            Ok(Some(component)) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((component, Source::Cache));
            }
            Ok(None) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
            }
            Err(reason) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(entry = %artifact.display(), %reason, "cached component refused, recompiling");
            }
        }
        let component = compile()?;
        if let Err(error) = write_entry(&component, &artifact, &digest) {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(entry = %artifact.display(), %error, "cannot cache compiled component");
        }
        Ok((component, Source::Compiled))
    }
}

/// Reads an entry: `Ok(None)` when absent, `Err` with the reason when present
/// but unusable.
fn read_entry(
    engine: &Engine,
    artifact: &Path,
    digest: &Path,
) -> Result<Option<Component>, String> {
    let expected = match fs::read_to_string(digest) {
        Ok(expected) => expected,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read digest: {error}")),
    };
    let bytes = fs::read(artifact).map_err(|error| format!("cannot read artifact: {error}"))?;
    let actual = hex(&Sha256::digest(&bytes));
    if actual != expected.trim() {
        return Err(format!(
            "digest mismatch: expected {}, found {actual}",
            expected.trim()
        ));
    }
    // SAFETY: `deserialize_file` requires a file produced by
    // `Component::serialize` that is not modified while mapped. The file's
    // digest matches the one written after its complete contents, and entries
    // are only ever replaced by rename, never written in place, so a mapping
    // keeps seeing the bytes just checked. Wasmtime itself refuses artifacts of
    // another version or engine configuration.
    unsafe { Component::deserialize_file(engine, artifact) }
        .map(Some)
        .map_err(|error| format!("incompatible artifact: {error}"))
}

/// Writes an entry: the artifact first, then its digest, each atomically.
fn write_entry(component: &Component, artifact: &Path, digest: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    write_atomically(artifact, &bytes)?;
    write_atomically(digest, hex(&Sha256::digest(&bytes)).as_bytes())
}

fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let temporary = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
    let result = fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(contents))
        .and_then(|()| fs::rename(&temporary, path));
    if result.is_err() {
        // Best effort: a leftover temporary file is harmless, only untidy.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// A `Hasher` feeding SHA-256, for a digest of a `Hash` value that is stable
/// across processes (std's hashers are not meant to be).
#[derive(Default)]
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(
            digest[..8]
                .try_into()
                .expect("a SHA-256 digest has 32 bytes"),
        )
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hasher_is_deterministic() {
        let digest = |value: &(u32, &str)| {
            let mut hasher = DigestHasher::default();
            value.hash(&mut hasher);
            hasher.finish()
        };
        assert_eq!(digest(&(1, "a")), digest(&(1, "a")));
        assert_ne!(digest(&(1, "a")), digest(&(2, "a")));
    }
}
