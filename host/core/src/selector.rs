//! Label selectors with Kubernetes semantics (`matchLabels` and
//! `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`).

use std::collections::BTreeMap;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a `matchExpressions` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// The label is set to one of the values.
    In(String, Vec<String>),
    /// The label is unset, or set to none of the values.
    NotIn(String, Vec<String>),
    /// The label is set.
    Exists(String),
    /// The label is unset.
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// A validated label selector. The empty selector matches every object, as in
/// Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// `matchLabels`: every pair must be present.
    pub match_labels: Labels,
    /// `matchExpressions`: every requirement must hold.
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every part of the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&Labels::new()));
    }

    #[test]
    fn match_labels_needs_every_pair() {
        let sel = LabelSelector {
            match_labels: labels(&[("team", "a"), ("env", "prod")]),
            ..Default::default()
        };
        assert!(sel.matches(&labels(&[("team", "a"), ("env", "prod"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("team", "a")])));
        assert!(!sel.matches(&labels(&[("team", "b"), ("env", "prod")])));
    }

    #[test]
    fn match_expressions_in_notin_exists_doesnotexist() {
        let l = labels(&[("team", "a")]);
        let expr = |r| LabelSelector {
            match_expressions: vec![r],
            ..Default::default()
        };
        assert!(expr(Requirement::In("team".into(), strings(&["a", "b"]))).matches(&l));
        assert!(!expr(Requirement::In("team".into(), strings(&["b"]))).matches(&l));
        assert!(!expr(Requirement::In("env".into(), strings(&["a"]))).matches(&l));
        assert!(!expr(Requirement::NotIn("team".into(), strings(&["a"]))).matches(&l));
        assert!(expr(Requirement::NotIn("env".into(), strings(&["a"]))).matches(&l));
        assert!(expr(Requirement::Exists("team".into())).matches(&l));
        assert!(!expr(Requirement::Exists("env".into())).matches(&l));
        assert!(expr(Requirement::DoesNotExist("env".into())).matches(&l));
        assert!(!expr(Requirement::DoesNotExist("team".into())).matches(&l));
    }
}
