//! Cheaper forms of DataFusion functions that the planning session uses in their place:
//! the same results, less work per row (the streaming job evaluates them on every event).

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{Expr, ExprSchemable, ScalarUDF};

mod regexp_capture;
mod to_char;

use regexp_capture::RegexpCapture;
use to_char::ToChar;

/// Puts the cheaper forms into `state`: `to_char` in place of DataFusion's, and
/// `regexp_match(s, 'pattern')[k]` planned as one capture (its `IS [NOT] NULL` as a
/// match alone where that tells).
pub(crate) fn install(state: &mut SessionState) -> Result<()> {
    let builtin = state.udf("to_char")?;
    state.register_udf(Arc::new(ScalarUDF::from(ToChar::new(builtin))))?;
    state.register_function_rewrite(Arc::new(CaptureRewrite))?;
    Ok(())
}

/// `regexp_match(s, 'literal pattern')[k]` (k ≥ 1, a literal) as [`RegexpCapture`]: the
/// k-th capture straight to a string, without building a list of every capture per row;
/// and `IS [NOT] NULL` of it as a test of the match alone, where that tells.
#[derive(Debug)]
struct CaptureRewrite;

impl FunctionRewrite for CaptureRewrite {
    fn name(&self) -> &str {
        "regexp_match_capture"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        Ok(
            match capture_of(&expr, schema).or_else(|| presence_of(&expr)) {
                Some(capture) => Transformed::yes(capture),
                None => Transformed::no(expr),
            },
        )
    }
}

/// `capture IS [NOT] NULL` as a test of the match alone, where that tells.
fn presence_of(expr: &Expr) -> Option<Expr> {
    let (Expr::IsNotNull(e) | Expr::IsNull(e)) = expr else {
        return None;
    };
    let Expr::ScalarFunction(f) = e.as_ref() else {
        return None;
    };
    let presence = f.func.inner().downcast_ref::<RegexpCapture>()?.presence()?;
    let test = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::from(presence)),
        f.args.clone(),
    ));
    Some(match expr {
        Expr::IsNull(_) => Expr::Not(Box::new(test)),
        _ => test,
    })
}

fn capture_of(expr: &Expr, schema: &DFSchema) -> Option<Expr> {
    let Expr::ScalarFunction(outer) = expr else {
        return None;
    };
    let [list, Expr::Literal(ScalarValue::Int64(Some(index)), _)] = outer.args.as_slice() else {
        return None;
    };
    let Expr::ScalarFunction(inner) = list else {
        return None;
    };
    let [values, Expr::Literal(pattern, _)] = inner.args.as_slice() else {
        return None;
    };
    if outer.func.name() != "array_element" || inner.func.name() != "regexp_match" {
        return None;
    }
    let pattern = pattern.try_as_str().flatten()?;
    let index = usize::try_from(*index).ok().filter(|&k| k >= 1)?;
    if !RegexpCapture::takes(&values.get_type(schema).ok()?) {
        return None;
    }
    // A pattern that does not compile stays with regexp_match, which reports it.
    let capture = RegexpCapture::new(pattern, index).ok()?;
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::from(capture)),
        vec![values.clone()],
    )))
}
