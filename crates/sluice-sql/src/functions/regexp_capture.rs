//! `regexp_match(s, pattern)[k]` as one function: the k-th capture as a string, with the
//! pattern compiled once for the job and no list of captures built per row.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, LargeStringArray, StringArray, StringArrayType,
    StringViewArray,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use regex::{CaptureLocations, Regex};

/// The `index`-th (from 1) capture of `pattern`, exactly as `regexp_match(s,
/// pattern)[index]`: the groups that took part in the match, in order (the whole match
/// when the pattern has no groups); NULL where there is no match or no such capture. As
/// a test (`IS NOT NULL` of it), a boolean, where a match alone tells
/// ([`RegexpCapture::presence`]).
#[derive(Debug)]
pub(crate) struct RegexpCapture {
    regex: Regex,
    index: usize,
    test: bool,
    signature: Signature,
}

/// The types of values it takes (as `regexp_match`), each giving its own type back.
const TAKES: [DataType; 3] = [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View];

impl RegexpCapture {
    pub(crate) fn new(pattern: &str, index: usize) -> Result<Self, regex::Error> {
        Ok(RegexpCapture {
            regex: Regex::new(pattern)?,
            index,
            test: false,
            signature: Signature::uniform(1, TAKES.to_vec(), Volatility::Immutable),
        })
    }

    /// The capture's `IS NOT NULL` as a match alone (no search for where the groups are),
    /// where the pattern's groups take part in every match; `None` where they may not.
    pub(crate) fn presence(&self) -> Option<Self> {
        let groups = self.regex.static_captures_len()? - 1;
        (!self.test && self.index <= groups.max(1)).then(|| RegexpCapture {
            regex: self.regex.clone(),
            index: self.index,
            test: true,
            signature: self.signature.clone(),
        })
    }

    /// Whether the values may be of type `t`.
    pub(crate) fn takes(t: &DataType) -> bool {
        TAKES.contains(t)
    }

    fn capture<'s>(&self, locations: &mut CaptureLocations, s: &'s str) -> Option<&'s str> {
        // As regexp_match: the empty pattern matches with one empty capture.
        if self.regex.as_str().is_empty() {
            return (self.index == 1).then_some("");
        }
        self.regex.captures_read(locations, s)?;
        let first = usize::from(locations.len() > 1);
        (first..locations.len())
            .filter_map(|g| locations.get(g))
            .nth(self.index - 1)
            .map(|(start, end)| &s[start..end])
    }

    fn captures<'a, A: StringArrayType<'a>>(
        &self,
        values: A,
    ) -> impl Iterator<Item = Option<&'a str>> {
        let mut locations = self.regex.capture_locations();
        values
            .iter()
            .map(move |v| v.and_then(|s| self.capture(&mut locations, s)))
    }

    fn present<'a, A: StringArrayType<'a>>(&self, values: A) -> ArrayRef {
        Arc::new(BooleanArray::from_iter(
            values
                .iter()
                .map(|v| Some(v.is_some_and(|s| self.regex.is_match(s)))),
        ))
    }

    fn evaluate(&self, values: &ArrayRef) -> Result<ArrayRef> {
        if self.test {
            return Ok(match values.data_type() {
                DataType::Utf8 => self.present(values.as_string::<i32>()),
                DataType::LargeUtf8 => self.present(values.as_string::<i64>()),
                DataType::Utf8View => self.present(values.as_string_view()),
                other => return exec_err!("regexp_match does not take {other}"),
            });
        }
        Ok(match values.data_type() {
            DataType::Utf8 => Arc::new(StringArray::from_iter(
                self.captures(values.as_string::<i32>()),
            )),
            DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter(
                self.captures(values.as_string::<i64>()),
            )),
            DataType::Utf8View => Arc::new(StringViewArray::from_iter(
                self.captures(values.as_string_view()),
            )),
            other => return exec_err!("regexp_match does not take {other}"),
        })
    }
}

impl PartialEq for RegexpCapture {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
            && self.index == other.index
            && self.test == other.test
    }
}

impl Eq for RegexpCapture {}

impl Hash for RegexpCapture {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.regex.as_str().hash(state);
        self.index.hash(state);
        self.test.hash(state);
    }
}

impl ScalarUDFImpl for RegexpCapture {
    fn name(&self) -> &str {
        if self.test {
            "regexp_capture_present"
        } else {
            "regexp_capture"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(if self.test {
            DataType::Boolean
        } else {
            arg_types[0].clone()
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [values] = args.args.as_slice() else {
            return exec_err!("regexp_capture takes one argument");
        };
        match values {
            ColumnarValue::Array(values) => Ok(ColumnarValue::Array(self.evaluate(values)?)),
            ColumnarValue::Scalar(v) => {
                let out = self.evaluate(&v.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;
    use datafusion::prelude::SessionContext;

    /// Each pattern and index against DataFusion's own `regexp_match(…)[k]` over the
    /// same strings, including groups that take no part and rows that do not match.
    #[test]
    fn gives_what_regexp_match_then_an_index_gives() {
        let rows = [
            Some("https://x/item.htm?query=1&channel_id=42"),
            Some("channel_id=7&x=1"),
            Some("no id here"),
            None,
            Some("b"),
            Some("ab"),
            Some(""),
        ];
        let values: ArrayRef = Arc::new(StringArray::from(rows.to_vec()));
        let ctx = SessionContext::new();
        for (pattern, index) in [
            ("(&|^)channel_id=([^&]*)", 2),
            ("(&|^)channel_id=([^&]*)", 1),
            ("(&|^)channel_id=([^&]*)", 3),
            ("(a)?(b)", 1),
            ("(a)?(b)", 2),
            ("(a)(b)|(c)", 1),
            ("(x)(y)", 3),
            ("channel", 1),
            ("channel", 2),
            ("", 1),
            ("", 2),
        ] {
            let capture = RegexpCapture::new(pattern, index).unwrap();
            let ours = capture.evaluate(&values).unwrap();
            let theirs = oracle(&ctx, &rows, pattern, index);
            let ours: Vec<Option<String>> = (0..ours.len())
                .map(|i| {
                    let s = ours.as_string::<i32>();
                    s.is_valid(i).then(|| s.value(i).to_string())
                })
                .collect();
            assert_eq!(ours, theirs, "regexp_match(s, '{pattern}')[{index}]");
            if let Some(test) = capture.presence() {
                let present = test.evaluate(&values).unwrap();
                let present: Vec<bool> = present
                    .as_boolean()
                    .iter()
                    .map(|b| b == Some(true))
                    .collect();
                let expected: Vec<bool> = theirs.iter().map(Option::is_some).collect();
                assert_eq!(
                    present, expected,
                    "regexp_match(s, '{pattern}')[{index}] IS NOT NULL"
                );
            }
        }
    }

    fn oracle(
        ctx: &SessionContext,
        rows: &[Option<&str>],
        pattern: &str,
        index: usize,
    ) -> Vec<Option<String>> {
        let literal = |r: &Option<&str>| match r {
            Some(s) => format!("'{s}'"),
            None => "CAST(NULL AS VARCHAR)".to_string(),
        };
        rows.iter()
            .map(|r| {
                let sql = format!(
                    "SELECT regexp_match({}, '{pattern}')[{index}] AS c",
                    literal(r)
                );
                let batches = futures::executor::block_on(async {
                    ctx.sql(&sql).await.unwrap().collect().await.unwrap()
                });
                let c = batches[0].column(0);
                let c = datafusion::arrow::compute::cast(c, &DataType::Utf8).unwrap();
                let c = c.as_string::<i32>();
                c.is_valid(0).then(|| c.value(0).to_string())
            })
            .collect()
    }
}
