//! Finds an interval join's time bounds in a join condition: comparisons between the
//! two sides' time attributes, each side optionally shifted by a constant interval, that
//! together say `right.t BETWEEN left.t + lower AND left.t + upper`.

use std::sync::Arc;

use datafusion::common::{JoinSide, ScalarValue};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::PhysicalExpr;
use datafusion::physical_plan::joins::utils::JoinFilter;

use super::physical::TimeAttr;

/// `right.t ∈ [left.t + lower_ms, left.t + upper_ms]`, with each side's column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub lower_ms: i64,
    pub upper_ms: i64,
    pub left_column: usize,
    pub right_column: usize,
}

/// A side's event time plus a constant.
#[derive(Debug, Clone, Copy)]
struct Term {
    left: bool,
    column: usize,
    offset_ms: i64,
}

/// The bounds, when the condition has both a lower and an upper one over event times.
pub(crate) fn interval_bounds(
    filter: &JoinFilter,
    left_attrs: &[Option<TimeAttr>],
    right_attrs: &[Option<TimeAttr>],
) -> Option<Bounds> {
    let mut conjuncts = Vec::new();
    split_and(filter.expression(), &mut conjuncts);
    let mut lower: Option<(i64, usize, usize)> = None;
    let mut upper: Option<(i64, usize, usize)> = None;
    for c in conjuncts {
        let Some(b) = c.downcast_ref::<BinaryExpr>() else {
            continue;
        };
        let op = *b.op();
        if !matches!(
            op,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
        ) {
            continue;
        }
        let term = |e: &Arc<dyn PhysicalExpr>| term(e, filter, left_attrs, right_attrs);
        let (Some(a), Some(z)) = (term(b.left()), term(b.right())) else {
            continue;
        };
        if a.left == z.left {
            continue;
        }
        // Normalize to `right.t OP left.t + c`.
        let (op, c, lcol, rcol) = if a.left {
            // left + oa OP right + oz  ⇔  right (flipped OP) left + (oa - oz)
            (flip(op), a.offset_ms - z.offset_ms, a.column, z.column)
        } else {
            (op, z.offset_ms - a.offset_ms, z.column, a.column)
        };
        match op {
            Operator::Gt | Operator::GtEq => {
                if lower.is_none_or(|(l, _, _)| c > l) {
                    lower = Some((c, lcol, rcol));
                }
            }
            _ => {
                if upper.is_none_or(|(u, _, _)| c < u) {
                    upper = Some((c, lcol, rcol));
                }
            }
        }
    }
    let (lo, l1, r1) = lower?;
    let (hi, l2, r2) = upper?;
    if l1 != l2 || r1 != r2 || lo > hi {
        return None;
    }
    Some(Bounds {
        lower_ms: lo,
        upper_ms: hi,
        left_column: l1,
        right_column: r1,
    })
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

fn split_and<'a>(e: &'a Arc<dyn PhysicalExpr>, out: &mut Vec<&'a Arc<dyn PhysicalExpr>>) {
    if let Some(b) = e.downcast_ref::<BinaryExpr>()
        && *b.op() == Operator::And
    {
        split_and(b.left(), out);
        split_and(b.right(), out);
        return;
    }
    out.push(e);
}

fn term(
    e: &Arc<dyn PhysicalExpr>,
    filter: &JoinFilter,
    left_attrs: &[Option<TimeAttr>],
    right_attrs: &[Option<TimeAttr>],
) -> Option<Term> {
    if let Some(c) = e.downcast_ref::<Column>() {
        let ci = filter.column_indices().get(c.index())?;
        let left = ci.side == JoinSide::Left;
        let attrs = if left { left_attrs } else { right_attrs };
        // Event time, or a window's bound (a window's rows come before the watermark
        // passes its end), but not a SESSION assignment's placeholder.
        match attrs.get(ci.index).copied().flatten()? {
            TimeAttr::Event => {}
            TimeAttr::WindowStart(k) | TimeAttr::WindowEnd(k)
                if !matches!(k, sluice_runtime::WindowKind::Session { .. }) => {}
            _ => return None,
        }
        return Some(Term {
            left,
            column: ci.index,
            offset_ms: 0,
        });
    }
    let b = e.downcast_ref::<BinaryExpr>()?;
    let sign = match b.op() {
        Operator::Plus => 1,
        Operator::Minus => -1,
        _ => return None,
    };
    if let Some(t) = term(b.left(), filter, left_attrs, right_attrs) {
        let ms = literal_ms(b.right())?;
        return Some(Term {
            offset_ms: t.offset_ms + sign * ms,
            ..t
        });
    }
    if sign == 1
        && let Some(t) = term(b.right(), filter, left_attrs, right_attrs)
    {
        let ms = literal_ms(b.left())?;
        return Some(Term {
            offset_ms: t.offset_ms + ms,
            ..t
        });
    }
    None
}

/// A constant interval in milliseconds (months have no fixed length: not accepted).
fn literal_ms(e: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    let lit = e.downcast_ref::<Literal>()?;
    match lit.value() {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        ScalarValue::DurationMillisecond(Some(v)) => Some(*v),
        ScalarValue::DurationSecond(Some(v)) => Some(v * 1000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v / 1000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(v / 1_000_000),
        _ => None,
    }
}
