//! `${VAR}` and `${VAR:-default}` expansion in option values.

use std::collections::HashMap;

/// Expands `${VAR}` and `${VAR:-default}` from `lookup`. An unset variable without a
/// default is an error naming it.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed '${{' in '{value}'"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variables `value` refers to, each with whether it gives a default.
pub fn referenced(value: &str) -> Vec<(&str, bool)> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        names.push(
            inner
                .split_once(":-")
                .map_or((inner, false), |(n, _)| (n, true)),
        );
        rest = &after[end + 1..];
    }
    names
}

/// A lookup over the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A lookup over a fixed map (tests, the server).
pub fn map_env(map: HashMap<String, String>) -> impl Fn(&str) -> Option<String> {
    move |name| map.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_defaults() {
        let env = map_env(HashMap::from([(
            "HOST".to_string(),
            "kafka:9092".to_string(),
        )]));
        assert_eq!(expand("${HOST}", &env).unwrap(), "kafka:9092");
        assert_eq!(expand("x-${PORT:-5432}-y", &env).unwrap(), "x-5432-y");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert!(expand("${MISSING}", &env).unwrap_err().contains("MISSING"));
    }
}
