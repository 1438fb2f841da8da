//! Kubernetes label selectors (`matchLabels`, `matchExpressions`) into the
//! core's validated selectors.

use herald_core::{LabelSelector, Requirement};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

/// Validates a selector. `Err` carries the sub-path and the message
/// (`matchExpressions[0].operator`, `unknown operator "Is"`).
pub fn validate(selector: &meta::LabelSelector) -> Result<LabelSelector, (String, String)> {
    let mut match_expressions = Vec::new();
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let at = |field: &str| format!("matchExpressions[{i}].{field}");
        if req.key.is_empty() {
            return Err((at("key"), "must not be empty".into()));
        }
        let values = req.values.clone().unwrap_or_default();
        let key = req.key.clone();
        let requirement = match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err((
                    at("values"),
                    format!("{} needs at least one value", req.operator),
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err((at("values"), format!("{} takes no values", req.operator)));
            }
            "In" => Requirement::In(key, values),
            "NotIn" => Requirement::NotIn(key, values),
            "Exists" => Requirement::Exists(key),
            "DoesNotExist" => Requirement::DoesNotExist(key),
            other => {
                return Err((
                    at("operator"),
                    format!(
                        "unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                    ),
                ));
            }
        };
        match_expressions.push(requirement);
    }
    Ok(LabelSelector {
        match_labels: selector.match_labels.clone().unwrap_or_default(),
        match_expressions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(op: &str, values: Option<Vec<&str>>) -> meta::LabelSelector {
        meta::LabelSelector {
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "team".into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn operators_are_checked() {
        assert!(validate(&requirement("In", Some(vec!["a"]))).is_ok());
        assert!(validate(&requirement("Exists", None)).is_ok());
        let (field, message) = validate(&requirement("Is", Some(vec!["a"]))).unwrap_err();
        assert_eq!(field, "matchExpressions[0].operator");
        assert!(message.contains("\"Is\""), "{message}");
        assert!(validate(&requirement("In", None)).is_err());
        assert!(validate(&requirement("Exists", Some(vec!["a"]))).is_err());
    }
}
