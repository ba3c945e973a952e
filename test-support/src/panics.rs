//! Panics outside the test code: a panic in a connection task does not
//! fail a test by itself (the task is detached), so tests look for them.

use std::sync::{Mutex, Once};

static HOOK: Once = Once::new();
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic raised outside the tests (in Wharf or a
/// dependency, on any thread), while still printing it as usual. Panics in
/// `tests/` files and in this crate are the tests' own. Tests check
/// [`server_panics`].
pub fn install_panic_detector() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| l.file().to_owned());
            let in_tests = location.as_deref().is_some_and(|file| {
                ["tests/", "tests\\", "test-support/", "test-support\\"]
                    .iter()
                    .any(|dir| file.contains(dir))
            });
            if !in_tests {
                let what = format!("{info}");
                SERVER_PANICS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(what);
            }
            previous(info);
        }));
    });
}

/// Panics recorded by [`install_panic_detector`] so far.
pub fn server_panics() -> Vec<String> {
    SERVER_PANICS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Fails the test if anything outside the tests panicked.
pub fn assert_no_server_panic() {
    let panics = server_panics();
    assert!(panics.is_empty(), "the server panicked: {panics:#?}");
}
