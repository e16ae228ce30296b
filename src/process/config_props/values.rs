//! Small builders of YAML values that the schema and its sections share.

use proptest::prelude::*;
use serde_yaml::{Mapping, Value};

/// A YAML string.
pub(super) fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// A mapping of the entries that are `Some`.
pub(super) fn map(entries: Vec<(&str, Option<Value>)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        if let Some(v) = v {
            m.insert(s(k), v);
        }
    }
    Value::Mapping(m)
}

/// A whole number within `min..=max`, mostly at a bound.
pub(super) fn count(min: u64, max: u64) -> BoxedStrategy<Option<Value>> {
    let v = prop::sample::select(vec![min, min + 1, (min + max) / 2, max - 1, max]);
    prop::option::of(v.prop_map(Value::from)).boxed()
}
