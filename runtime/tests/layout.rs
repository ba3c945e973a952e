//! The source layout's one rule: the folders of `runtime/src` depend on each
//! other in one direction only, so there is no import cycle between them.
//!
//! From the bottom up: the leaf modules (`error`, `extensions`, `rt`, and
//! `net/`, the connection stream over `rt`'s sockets), then
//! `http/` (the upgrade request and its answers), `connection/` (a
//! connection's life and its close, groups and selectors), `cluster/` (the
//! selectors across nodes through Redis, behind the `cluster` feature),
//! `handler/` (the `Handler` trait and annotated functions), `server/`
//! (which knows everything but the kit) and `test/` (the test kit, a client
//! of the server). A module may
//! name one in its own layer or below, never above. This test reads the
//! sources and fails naming the file and the reference that breaks the rule.

use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of `runtime/src` and its layer; higher layers may
/// depend on lower ones.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("extensions", 0),
    ("rt", 0),
    ("net", 0),
    ("http", 1),
    ("connection", 2),
    ("cluster", 3),
    ("handler", 4),
    ("server", 5),
    ("test", 6),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read runtime/src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source file names through `crate::...`, with
/// the line each is named on (comments skipped).
fn references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `$crate::` in a macro is the facade, not a module of the crate.
            if !rest[..at].ends_with('$') && !name.is_empty() {
                found.push((number + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn folders_depend_on_each_other_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut broken = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs"))
            .expect("a file name");
        // The facade re-exports everything.
        let Some(own) = layer(top) else {
            assert_eq!(top, "lib", "a top-level module missing from LAYERS");
            continue;
        };
        let text = fs::read_to_string(file).expect("read a source file");
        for (line, name) in references(&text) {
            match layer(&name) {
                Some(theirs) if theirs > own => broken.push(format!(
                    "{}:{line}: `{top}` (layer {own}) names `crate::{name}` (layer {theirs})",
                    relative.display()
                )),
                _ => {}
            }
        }
    }
    assert!(
        broken.is_empty(),
        "references against the layering:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_reference_reader_sees_through_comments_and_macros() {
    let text = "use crate::server::state::Inner; // crate::handler\n$crate::Conn\nlet x = crate::http::Query::parse(q);";
    let names: Vec<String> = references(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["server", "http"]);
}

/// The sibling modules a file of a folder names (`super::x` or
/// `crate::folder::x`), comments skipped.
fn siblings(text: &str, folder: &str) -> Vec<String> {
    let mut found = Vec::new();
    let prefixes = ["super::".to_owned(), format!("crate::{folder}::")];
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in &prefixes {
            let mut rest = code;
            while let Some(at) = rest.find(prefix.as_str()) {
                let after = &rest[at + prefix.len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `super::{a, b}` names several.
                if name.is_empty() && after.starts_with('{') {
                    let list = after[1..].split('}').next().unwrap_or("");
                    found.extend(
                        list.split(',')
                            .map(|item| item.trim().split("::").next().unwrap_or("").to_owned())
                            .filter(|item| !item.is_empty()),
                    );
                } else if !name.is_empty() {
                    found.push(name);
                }
                rest = after;
            }
        }
    }
    found
}

/// Inside each folder too, modules depend on each other without a cycle,
/// so each file can be read after the ones it uses.
#[test]
fn no_import_cycle_inside_a_folder() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (folder, _) in LAYERS {
        let dir = src.join(folder);
        if !dir.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        sources(&dir, &mut files);
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_stem()?.to_str().map(str::to_owned))
            .filter(|name| name != "mod")
            .collect();
        let mut edges: Vec<(String, String)> = Vec::new();
        for file in &files {
            let Some(own) = file.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if own == "mod" {
                continue;
            }
            let text = fs::read_to_string(file).expect("read a source file");
            for other in siblings(&text, folder) {
                if other != own
                    && names.contains(&other)
                    && !edges.contains(&(own.into(), other.clone()))
                {
                    edges.push((own.to_owned(), other));
                }
            }
        }
        // Repeatedly remove the modules that use no remaining sibling; what
        // is left is on a cycle.
        let mut left = names.clone();
        loop {
            let before = left.len();
            let keep: Vec<String> = left
                .iter()
                .filter(|m| edges.iter().any(|(a, b)| a == *m && left.contains(b)))
                .cloned()
                .collect();
            left = keep;
            if left.len() == before {
                break;
            }
        }
        let cycle: Vec<String> = edges
            .iter()
            .filter(|(a, b)| left.contains(a) && left.contains(b))
            .map(|(a, b)| format!("{folder}/{a} -> {b}"))
            .collect();
        assert!(
            left.is_empty(),
            "an import cycle in {folder}/:\n{}",
            cycle.join("\n")
        );
    }
}

#[test]
fn the_sibling_reader_sees_lists_and_paths() {
    let text = "use super::{close::CloseCode, handle};\nuse crate::connection::registry::Registry; // super::driver";
    assert_eq!(
        siblings(text, "connection"),
        ["close", "handle", "registry"]
    );
}
