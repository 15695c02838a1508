//! Replays every fuzz seed (`fuzz/seeds/<target>/`) and every saved crash
//! (`fuzz/regressions/<target>/`) through the same entry points the cargo-fuzz targets call, so
//! what fuzzing found once stays fixed in plain `cargo test`.

use std::path::Path;

use httpcache_proxy::fuzzing;

/// A fuzz entry point.
type EntryPoint = fn(&[u8]);

const TARGETS: &[(&str, EntryPoint)] = &[
    ("request_head", fuzzing::request_head),
    ("embedded_route", fuzzing::embedded_route),
    ("cache_control", fuzzing::cache_control),
    ("entry_decoder", fuzzing::entry_decoder),
];

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<_> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.retain(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
    files.sort();
    files
}

#[test]
fn every_seed_and_saved_crash_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, run) in TARGETS {
        let seeds = files(&root.join("seeds").join(target));
        assert!(seeds.len() >= 4, "{target}: the seed corpus is missing");
        for path in seeds.iter().chain(files(&root.join("regressions").join(target)).iter()) {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panics", path.display());
        }
    }
}

/// The entry-decoder seeds reach past the prefix (a valid entry decodes), so fuzzing starts
/// from inputs that exercise the head decoder, not just the magic check.
#[test]
fn the_entry_seed_is_a_valid_entry() {
    use httpcache_proxy::cache::store::codec;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/entry_decoder/response");
    let data = std::fs::read(path).unwrap();
    let len = codec::decode_prefix(&data).unwrap() as usize;
    let head = codec::decode_head(&data[8..8 + len + 4]).unwrap();
    assert_eq!(head.key, "http://example.com:80/x");
    let (body_len, _) = codec::decode_trailer(&data[data.len() - 16..]).unwrap();
    assert_eq!(body_len, 11);
}

/// Short and junk inputs of every length are handled (no slicing past an end).
#[test]
fn short_junk_inputs_do_not_panic() {
    for len in 0..64 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
        for (_, run) in TARGETS {
            run(&junk);
        }
    }
}
