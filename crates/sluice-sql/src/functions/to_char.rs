//! `to_char` with the format read once per batch: DataFusion's reads a constant format
//! again for every row; a timestamp column with a constant format is formatted here, and
//! everything else goes to DataFusion's own.

use std::fmt::Write;
use std::sync::Arc;

use chrono::NaiveDateTime;
use chrono::format::{Item, StrftimeItems};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::temporal_conversions::as_datetime;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// DataFusion's `to_char` (its signature, aliases and results), faster for a timestamp
/// column without a time zone and a constant format.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ToChar {
    builtin: Arc<ScalarUDF>,
}

impl ToChar {
    pub(crate) fn new(builtin: Arc<ScalarUDF>) -> Self {
        ToChar { builtin }
    }
}

/// `values` formatted with `format`, or `None` where DataFusion's `to_char` should
/// answer instead (another type, a time zone, a format chrono refuses, a value out of
/// range), so that results and errors stay DataFusion's.
fn format_timestamps(values: &ArrayRef, format: &str) -> Option<ArrayRef> {
    // The type first: a format is not read for a batch that goes to DataFusion's.
    let DataType::Timestamp(unit, None) = values.data_type() else {
        return None;
    };
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return None;
    }
    match unit {
        TimeUnit::Second => format_as::<TimestampSecondType>(values, &items),
        TimeUnit::Millisecond => format_as::<TimestampMillisecondType>(values, &items),
        TimeUnit::Microsecond => format_as::<TimestampMicrosecondType>(values, &items),
        TimeUnit::Nanosecond => format_as::<TimestampNanosecondType>(values, &items),
    }
}

fn format_as<T: ArrowTimestampType>(values: &ArrayRef, items: &[Item<'_>]) -> Option<ArrayRef> {
    let values = values.as_primitive::<T>();
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    // Consecutive events often share a time: its text is written once.
    let mut last: Option<NaiveDateTime> = None;
    let mut text = String::new();
    for v in values.iter() {
        let Some(v) = v else {
            out.append_null();
            continue;
        };
        let t: NaiveDateTime = as_datetime::<T>(v)?;
        if last != Some(t) {
            text.clear();
            write!(text, "{}", t.format_with_items(items.iter())).ok()?;
            last = Some(t);
        }
        out.append_value(&text);
    }
    Some(Arc::new(out.finish()))
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        self.builtin.name()
    }

    fn aliases(&self) -> &[String] {
        self.builtin.aliases()
    }

    fn signature(&self) -> &Signature {
        self.builtin.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.builtin.return_type(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.builtin.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [
            ColumnarValue::Array(values),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(format))),
        ] = args.args.as_slice()
            && let Some(out) = format_timestamps(values, format)
        {
            return Ok(ColumnarValue::Array(out));
        }
        self.builtin.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;

    /// Against DataFusion's `to_char` over the same timestamps (repeats, nulls, the
    /// epoch, before it), for the formats jobs use and ones with text around them.
    #[test]
    fn formats_as_datafusion_does() {
        let times = vec![
            Some(1_700_000_000_123),
            Some(1_700_000_000_123),
            Some(1_700_000_000_999),
            None,
            Some(0),
            Some(-86_400_001),
            Some(1_700_000_060_000),
            Some(1_700_000_060_000),
        ];
        let values: ArrayRef = Arc::new(TimestampMillisecondArray::from(times));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            values.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![values.clone()]).unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("times", batch).unwrap();
        for format in [
            "%Y-%m-%d",
            "%H:%M",
            "%Y-%m-%dT%H:%M:%S%.3f",
            "day %j of %Y, %A",
            "%%literal%%",
        ] {
            let ours = format_timestamps(&values, format).expect("formats");
            let sql = format!("SELECT to_char(t, '{format}') FROM times");
            let theirs = futures::executor::block_on(async {
                ctx.sql(&sql).await.unwrap().collect().await.unwrap()
            });
            assert_eq!(ours.as_ref(), theirs[0].column(0).as_ref(), "{format}");
        }
    }

    #[test]
    fn leaves_what_it_cannot_format_to_datafusion() {
        let values: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![Some(0)]));
        // A time zone on a timestamp without one, and a format chrono refuses.
        assert!(format_timestamps(&values, "%Y %Z").is_none());
        assert!(format_timestamps(&values, "%Q").is_none());
    }
}
