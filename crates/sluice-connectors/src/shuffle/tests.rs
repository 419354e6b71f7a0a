use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::*;

fn table() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// Rows `(k, v)` read at `offsets` of source partition `p`, through the record format.
fn record(p: u32, rows: &[(&str, i64)], offsets: &[i64]) -> Frame {
    let batch = RecordBatch::try_new(
        table(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap();
    let frame = Frame::Rows {
        partition: p,
        batch: with_offsets(&batch, offsets).unwrap(),
    };
    Frame::decode(&frame.encode().unwrap()).unwrap()
}

fn values(t: Taking) -> Vec<i64> {
    match t {
        Taking::Rows { batch, .. } => {
            assert_eq!(batch.schema(), table());
            batch
                .column(1)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        }
        Taking::Nothing => Vec::new(),
        Taking::Progress { .. } => panic!("progress"),
    }
}

#[test]
fn a_replay_cut_into_other_batches_is_taken_once() {
    let mut taken = Taken::new(2);
    let t = table();
    assert_eq!(
        values(
            taken
                .take(record(0, &[("a", 1), ("b", 2)], &[10, 11]), &t)
                .unwrap()
        ),
        [1, 2]
    );
    // Partition 1 is apart from partition 0.
    assert_eq!(
        values(taken.take(record(1, &[("a", 100)], &[10]), &t).unwrap()),
        [100]
    );
    // The writer restarted from offset 9 and cut its batches elsewhere; a record
    // dropped as bad (offset 12) leaves a gap.
    assert_eq!(
        values(
            taken
                .take(record(0, &[("z", 0), ("a", 1)], &[9, 10]), &t)
                .unwrap()
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        values(
            taken
                .take(record(0, &[("b", 2), ("c", 4)], &[11, 13]), &t)
                .unwrap()
        ),
        [4]
    );
    assert_eq!(taken.highest, [Some(13), Some(10)]);
}

#[test]
fn progress_round_trips_and_ends_a_partition() {
    let mut taken = Taken::new(2);
    let p = Progress {
        max_event: Some(1_700_000_000_000),
        idle: false,
        end: true,
    };
    let frame = Frame::decode(
        &Frame::Progress {
            partition: 1,
            progress: p,
        }
        .encode()
        .unwrap(),
    )
    .unwrap();
    match taken.take(frame, &table()).unwrap() {
        Taking::Progress {
            partition,
            progress,
        } => assert_eq!((partition, progress), (1, p)),
        other => panic!("{other:?}"),
    }
    assert!(!taken.all_ended());
    taken.ended[0] = true;
    assert!(taken.all_ended());
}

#[test]
fn records_of_another_shape_or_partition_or_version_are_refused() {
    let mut taken = Taken::new(1);
    let other: SchemaRef = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
    let why = taken
        .take(record(0, &[("a", 1)], &[1]), &other)
        .unwrap_err();
    assert!(why.contains("another shape"), "{why}");
    let why = taken
        .take(record(3, &[("a", 1)], &[1]), &table())
        .unwrap_err();
    assert!(why.contains("partition 3"), "{why}");
    let mut bytes = record(0, &[("a", 1)], &[1]).encode().unwrap();
    bytes[0] = 9;
    assert!(matches!(Frame::decode(&bytes), Err(FrameError::Version(9))));
    assert!(matches!(Frame::decode(&bytes[..3]), Err(FrameError::Short)));
}
