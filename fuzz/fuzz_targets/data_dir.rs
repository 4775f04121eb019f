//! Any bytes as the database file of a data directory: opening and loading
//! fail with an error or succeed, and never bring the process down.
//!
//! The database library panics on some damaged files; the store catches
//! those panics and reports the file as damaged, so here a panic inside the
//! library unwinds to the store, and any other panic is a crash.
#![no_main]

use headline_dedup::store::{DB_FILE, Store};
use libfuzzer_sys::fuzz_target;

fn panics_inside_the_database_library_unwind() {
    std::panic::set_hook(Box::new(|info| {
        if !info.location().is_some_and(|l| l.file().contains("/redb-")) {
            eprintln!("{info}");
            std::process::abort();
        }
    }));
}

fuzz_target!(init: panics_inside_the_database_library_unwind(), |bytes: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::write(dir.path().join(DB_FILE), bytes).is_err() {
        return;
    }
    if let Ok(store) = Store::open(dir.path()) {
        let _ = store.load();
    }
});
