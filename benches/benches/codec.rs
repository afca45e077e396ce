//! Codec and apply throughput on a real editing trace (`data/automerge-paper.json.gz`).
//!
//! Setup replays the trace once into a document, capturing every keystroke's v1 update as a
//! client would send it, and checks the result against `data/automerge-paper.final.txt`.
//! Every benchmark reports its throughput in keystrokes of the trace (259,778), so the
//! per-keystroke path and the whole-document path read on one scale.
//!
//! Run: `cargo bench -p benches --bench codec` (about two minutes on 2 cores).

use std::hint::black_box;
use std::time::Duration;

use benches::trace::{EditingTrace, data_dir, text_of};
use crdt_store::new_doc;
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

/// The root text the trace is replayed into, as the y-crdt benchmarks name it.
const ROOT: &str = "text";

/// Everything the benchmarks read, built once.
struct Fixture {
    /// Each keystroke's v1 update, in order.
    updates: Vec<Vec<u8>>,
    /// The document after the whole trace.
    final_doc: Doc,
    /// The whole trace as one v1 update, as produced by Yjs.
    b4_update: Vec<u8>,
}

impl Fixture {
    fn build() -> Self {
        let data = data_dir();
        let trace = EditingTrace::load(&data.join("automerge-paper.json.gz"))
            .expect("reading data/automerge-paper.json.gz");
        let expected = std::fs::read_to_string(data.join("automerge-paper.final.txt"))
            .expect("reading data/automerge-paper.final.txt");
        assert_eq!(
            trace.end_content, expected,
            "the trace's endContent disagrees with final.txt"
        );

        let final_doc = new_doc();
        let updates = trace.replay(&final_doc, ROOT);
        assert_text(&final_doc, &expected, "replaying the trace");

        // The captured updates must rebuild the same text on a document that only receives
        // them, or benchmark (b) would measure something other than a real session.
        let remote = new_doc();
        apply_all(&remote, &updates);
        assert_text(&remote, &expected, "applying the captured updates remotely");

        let b4_update =
            std::fs::read(data.join("b4-update.bin")).expect("reading data/b4-update.bin");
        let b4_doc = new_doc();
        apply_one(&b4_doc, &b4_update);
        assert_text(&b4_doc, &expected, "applying b4-update.bin");

        Self {
            updates,
            final_doc,
            b4_update,
        }
    }
}

fn assert_text(doc: &Doc, expected: &str, what: &str) {
    let actual = text_of(doc, ROOT);
    if actual != expected {
        let first_difference = actual
            .chars()
            .zip(expected.chars())
            .position(|(a, b)| a != b)
            .unwrap_or(actual.len().min(expected.len()));
        panic!(
            "{what} produced {} characters, expected {}; first difference at character {first_difference}",
            actual.chars().count(),
            expected.chars().count()
        );
    }
}

/// Decodes and applies one update in its own transaction, as the server does per message.
fn apply_one(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("a captured update decodes");
    doc.transact_mut()
        .apply_update(update)
        .expect("a captured update applies");
}

fn apply_all(doc: &Doc, updates: &[Vec<u8>]) {
    for update in updates {
        apply_one(doc, update);
    }
}

fn codec(c: &mut Criterion) {
    let fixture = Fixture::build();
    let keystrokes = Throughput::Elements(fixture.updates.len() as u64);
    let frames: Vec<_> = fixture
        .updates
        .iter()
        .map(|update| protocol::encode_update_frame(update))
        .collect();

    let mut group = c.benchmark_group("automerge_paper");
    // Applying the trace takes about half a second per pass: flat sampling keeps ten samples
    // at ten passes instead of criterion's default ramp of 55.
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(keystrokes.clone());

    group.bench_function("decode_update_frames", |b| {
        b.iter(|| {
            for frame in &frames {
                black_box(protocol::decode_message(black_box(frame)).expect("frame decodes"));
            }
        })
    });

    group.bench_function("encode_update_frames", |b| {
        b.iter(|| {
            for update in &fixture.updates {
                black_box(protocol::encode_update_frame(black_box(update)));
            }
        })
    });

    group.bench_function("apply_remote_updates", |b| {
        b.iter_batched(
            new_doc,
            |doc| {
                apply_all(&doc, &fixture.updates);
                // Returned so that dropping the document is not timed.
                doc
            },
            BatchSize::PerIteration,
        )
    });

    // What the server does with each client update: validate (bounded counts and nesting),
    // then decode and apply. Compare with `apply_remote_updates` for the cost of validation.
    let limits = protocol::UpdateLimits::default();
    group.bench_function("validate_updates", |b| {
        b.iter(|| {
            for update in &fixture.updates {
                black_box(
                    protocol::update::inspect(black_box(update), &limits)
                        .expect("a captured update is valid"),
                );
            }
        })
    });

    group.bench_function("apply_client_updates", |b| {
        b.iter_batched(
            new_doc,
            |doc| {
                for update in &fixture.updates {
                    crdt_store::guard::apply_client_update(
                        &mut doc.transact_mut(),
                        update,
                        &limits,
                    )
                    .expect("a captured update applies");
                }
                doc
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("validate_b4", |b| {
        b.iter(|| {
            black_box(
                protocol::update::inspect(black_box(&fixture.b4_update), &limits)
                    .expect("b4-update.bin is valid"),
            )
        })
    });

    group.bench_function("decode_b4_into_doc", |b| {
        b.iter_batched(
            new_doc,
            |doc| {
                apply_one(&doc, &fixture.b4_update);
                doc
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("encode_state_v1", |b| {
        b.iter(|| {
            black_box(
                fixture
                    .final_doc
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default()),
            )
        })
    });

    group.finish();
}

criterion_group! {
    name = codec_benches;
    // Small on purpose: the whole run stays within about two minutes on 2 cores. Raise these
    // (or pass `--measurement-time`) when comparing two builds closely.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = codec
}
criterion_main!(codec_benches);
