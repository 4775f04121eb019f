//! Normalisation never panics, is deterministic, and its exact key is a
//! function of the normalised text.
#![no_main]

use headline_dedup::core::normalize::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (text, source) = input;
    let source = (!source.is_empty()).then_some(source);
    let first = normalize(text, source);
    let again = normalize(text, source);
    assert_eq!(first.text, again.text);
    assert_eq!(first.key(), again.key());
    let renormalized = normalize(&first.text, None);
    if renormalized.text == first.text {
        assert_eq!(renormalized.key(), first.key());
    }
});
