//! `label_replace` and `label_join`: new label sets per series; series that end up with equal
//! label sets are merged (or fail when they overlap).

use std::sync::Arc;

use super::call::string_arg;
use super::{Evaluator, Val, merge_same_labels};
use crate::model::{METRIC_NAME, compile_anchored};
use crate::promql::ast::Call;
use crate::promql::engine::QueryError;

impl Evaluator<'_, '_> {
    pub(super) fn label_replace(&self, c: &Call) -> Result<Val, QueryError> {
        let s = |i: usize| string_arg(&c.args[i]);
        let (dst, repl, src, regex) = (s(1)?, s(2)?, s(3)?, s(4)?);
        let re = compile_anchored(&regex.0).map_err(|_| {
            QueryError::Execution(format!("invalid regular expression in label_replace(): {}", regex.0))
        })?;
        if !dst.1 || dst.0.is_empty() {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_replace(): {}",
                dst.2
            )));
        }
        let mut input = self.eval_vector(&c.args[0])?;
        for series in &mut input {
            let src_val = series.labels.get_or_empty(&src.0);
            if let Some(caps) = re.captures(src_val) {
                let mut value = String::new();
                caps.expand(&repl.0, &mut value);
                let mut b = series.labels.builder();
                b.set(&dst.0, &value);
                series.labels = Arc::new(b.labels());
                if dst.0 == METRIC_NAME {
                    series.drop_name = false;
                }
            }
        }
        Ok(Val::Vector(merge_same_labels(input)?))
    }

    pub(super) fn label_join(&self, c: &Call) -> Result<Val, QueryError> {
        let dst = string_arg(&c.args[1])?;
        let sep = string_arg(&c.args[2])?;
        let mut srcs = Vec::new();
        for a in &c.args[3..] {
            let src = string_arg(a)?;
            if !src.1 {
                return Err(QueryError::Execution(format!(
                    "invalid source label name in label_join(): {}",
                    src.2
                )));
            }
            srcs.push(src.0);
        }
        if !dst.1 || dst.0.is_empty() {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_join(): {}",
                dst.2
            )));
        }
        let mut input = self.eval_vector(&c.args[0])?;
        for series in &mut input {
            let value: Vec<&str> = srcs.iter().map(|n| series.labels.get_or_empty(n)).collect();
            let value = value.join(&sep.0);
            let mut b = series.labels.builder();
            b.set(&dst.0, &value);
            series.labels = Arc::new(b.labels());
            if dst.0 == METRIC_NAME {
                series.drop_name = false;
            }
        }
        Ok(Val::Vector(merge_same_labels(input)?))
    }
}
