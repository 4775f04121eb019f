//! Any bytes as an Ingest request: decoding, validation and the engine
//! never panic, every item gets an answer, and a replay of the valid ones
//! is answered from memory.
#![no_main]

use std::sync::{Arc, OnceLock};

use headline_dedup::api::headlines;
use headline_dedup::app::{App, SettingsBook};
use headline_dedup::core::embed::StaticModel;
use headline_dedup::pb::IngestRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn model() -> Arc<StaticModel> {
    static MODEL: OnceLock<Arc<StaticModel>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| Arc::new(StaticModel::bundled().expect("the bundled model loads"))))
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(request) = IngestRequest::decode(bytes) else { return };
    let now = 1_400_000_000_000;
    let items = headlines(&request.headlines, now);
    let app = App::in_memory(model(), SettingsBook::default()).expect("app");
    let Ok(answers) = app.ingest("default", items) else { return };
    assert_eq!(answers.len(), request.headlines.len());
    let again = app.ingest("default", headlines(&request.headlines, now)).expect("a replay is accepted");
    for (first, second) in answers.iter().zip(&again) {
        if first.is_ok() {
            assert!(matches!(second, Ok(a) if a.replayed), "{first:?} then {second:?}");
        }
    }
});
