//! Binary operators: scalar/scalar, vector/scalar and vector/vector with `on`/`ignoring`,
//! `group_left`/`group_right`, `bool`, the set operators, and Prometheus's cardinality errors.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Assembler, Evaluator, METADATA_LABELS, Series, Val, signature};
use crate::model::Labels;
use crate::promql::ast::{BinOp, Binary, Cardinality, VectorMatching};
use crate::promql::engine::QueryError;

/// `lhs op rhs` on floats: the value and, for comparisons, whether the pair is kept.
fn apply(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Pow => (go_pow(l, r), true),
        BinOp::Mod => (l % r, true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eql => (l, l == r),
        BinOp::Neq => (l, l != r),
        BinOp::Gtr => (l, l > r),
        BinOp::Lss => (l, l < r),
        BinOp::Gte => (l, l >= r),
        BinOp::Lte => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

/// Go's `math.Pow`, which differs from C's `pow` in a few special cases.
fn go_pow(x: f64, y: f64) -> f64 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if x == -1.0 && y.is_infinite() {
        return 1.0;
    }
    x.powf(y)
}

impl Evaluator<'_, '_> {
    pub(super) fn binary(&self, b: &Binary) -> Result<Val, QueryError> {
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(&x, &y)| {
                        let (v, keep) = apply(b.op, x, y);
                        if b.op.is_comparison() { if keep { 1.0 } else { 0.0 } } else { v }
                    })
                    .collect(),
            )),
            (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(self.vector_scalar(b, v, &s, false))),
            (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(self.vector_scalar(b, v, &s, true))),
            (Val::Vector(l), Val::Vector(r)) => {
                let default = VectorMatching {
                    card: if b.op.is_set() { Cardinality::ManyToMany } else { Cardinality::OneToOne },
                    on: false,
                    labels: Vec::new(),
                    include: Vec::new(),
                    fill_lhs: None,
                    fill_rhs: None,
                };
                let m = b.matching.as_ref().unwrap_or(&default);
                let out = match b.op {
                    BinOp::And | BinOp::Or | BinOp::Unless => self.set_op(b.op, m, l, r)?,
                    _ => self.vector_vector(b, m, l, r)?,
                };
                Ok(Val::Vector(out))
            }
            _ => Err(QueryError::Execution(
                "binary expression must contain only scalar and instant vector types".into(),
            )),
        }
    }

    fn vector_scalar(&self, b: &Binary, mut v: Vec<Series>, s: &[f64], swap: bool) -> Vec<Series> {
        let drop = b.op.changes_metric_schema() || b.return_bool;
        for series in &mut v {
            series.points.retain_mut(|p| {
                let k = self.step_index(p.t);
                let (l, r) = if swap { (s[k], p.v) } else { (p.v, s[k]) };
                let (mut value, mut keep) = apply(b.op, l, r);
                // The vector's value survives a comparison, whichever side it is on.
                if b.op.is_comparison() && swap {
                    value = r;
                }
                if b.return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                p.v = value;
                keep
            });
            if drop {
                series.drop_name = true;
            }
        }
        v.retain(|s| !s.points.is_empty());
        v
    }

    fn sigs(&self, side: &[Series], m: &VectorMatching) -> Vec<u64> {
        let mut names = m.labels.clone();
        names.sort();
        side.iter().map(|s| signature(&s.labels, m.on, &names)).collect()
    }

    /// `and`, `or`, `unless`: per step, by matching signature.
    fn set_op(
        &self,
        op: BinOp,
        m: &VectorMatching,
        lhs: Vec<Series>,
        rhs: Vec<Series>,
    ) -> Result<Vec<Series>, QueryError> {
        let (ls, rs) = (self.sigs(&lhs, m), self.sigs(&rhs, m));
        let mut out = Assembler::new(self.start == self.end);
        let mut lslot: Vec<Option<usize>> = vec![None; lhs.len()];
        let mut rslot: Vec<Option<usize>> = vec![None; rhs.len()];
        let (mut lc, mut rc) = (vec![0usize; lhs.len()], vec![0usize; rhs.len()]);
        let mut present: HashMap<u64, ()> = HashMap::new();
        for k in 0..self.steps() {
            let ts = self.ts(k);
            if k % 64 == 0 {
                self.ctx.check_time("expression evaluation")?;
            }
            let at = |series: &[Series], cur: &mut [usize], i: usize| -> Option<f64> {
                let p = series[i].points.get(cur[i]).filter(|p| p.t == ts)?;
                cur[i] += 1;
                Some(p.v)
            };
            let lv: Vec<(usize, f64)> =
                (0..lhs.len()).filter_map(|i| at(&lhs, &mut lc, i).map(|v| (i, v))).collect();
            let rv: Vec<(usize, f64)> =
                (0..rhs.len()).filter_map(|i| at(&rhs, &mut rc, i).map(|v| (i, v))).collect();
            present.clear();
            let emit = |out: &mut Assembler, slots: &mut [Option<usize>], s: &Series, i: usize, v: f64| {
                let slot = match (out.instant_mode(), slots[i]) {
                    (false, Some(x)) => x,
                    _ => {
                        let x = out.slot(&s.labels, s.drop_name);
                        slots[i] = Some(x);
                        x
                    }
                };
                out.push(slot, ts, v)
            };
            match op {
                BinOp::And | BinOp::Unless => {
                    if op == BinOp::And && (lv.is_empty() || rv.is_empty()) {
                        continue;
                    }
                    for &(j, _) in &rv {
                        present.insert(rs[j], ());
                    }
                    for &(i, v) in &lv {
                        if present.contains_key(&ls[i]) == (op == BinOp::And) {
                            emit(&mut out, &mut lslot, &lhs[i], i, v)?;
                        }
                    }
                }
                _ => {
                    for &(i, v) in &lv {
                        present.insert(ls[i], ());
                        emit(&mut out, &mut lslot, &lhs[i], i, v)?;
                    }
                    for &(j, v) in &rv {
                        if !present.contains_key(&rs[j]) {
                            emit(&mut out, &mut rslot, &rhs[j], j, v)?;
                        }
                    }
                }
            }
        }
        Ok(out.finish())
    }

    /// Arithmetic and comparison between vectors: one-to-one or many-to-one/one-to-many matching.
    fn vector_vector(
        &self,
        b: &Binary,
        m: &VectorMatching,
        lhs: Vec<Series>,
        rhs: Vec<Series>,
    ) -> Result<Vec<Series>, QueryError> {
        let (ls, rs) = (self.sigs(&lhs, m), self.sigs(&rhs, m));
        // For one-to-many the right side is the "many" side: swap, and swap values back below.
        let swapped = m.card == Cardinality::OneToMany;
        let (many, one, msig, osig) = if swapped { (&rhs, &lhs, &rs, &ls) } else { (&lhs, &rhs, &ls, &rs) };
        let mut out = Assembler::new(self.start == self.end);
        // Result labels and output slot per (many, one) pair; `usize::MAX` stands for a fill value.
        let mut result_labels: HashMap<(usize, usize), Arc<Labels>> = HashMap::new();
        let mut slots: HashMap<(usize, usize), usize> = HashMap::new();
        let (mut mc, mut oc) = (vec![0usize; many.len()], vec![0usize; one.len()]);
        let mut one_by_sig: HashMap<u64, (usize, f64)> = HashMap::new();
        let mut matched_one_to_one: HashMap<u64, ()> = HashMap::new();
        let mut matched_many: HashMap<u64, Vec<u64>> = HashMap::new();
        for k in 0..self.steps() {
            let ts = self.ts(k);
            if k % 64 == 0 {
                self.ctx.check_time("expression evaluation")?;
            }
            let take = |series: &[Series], cur: &mut [usize], i: usize| -> Option<f64> {
                let p = series[i].points.get(cur[i]).filter(|p| p.t == ts)?;
                cur[i] += 1;
                Some(p.v)
            };
            let mv: Vec<(usize, f64)> =
                (0..many.len()).filter_map(|i| take(many, &mut mc, i).map(|v| (i, v))).collect();
            let ov: Vec<(usize, f64)> =
                (0..one.len()).filter_map(|i| take(one, &mut oc, i).map(|v| (i, v))).collect();
            // As in Prometheus, the fills keep their sides' names after the one-to-many swap:
            // `fill_right` stands in for a missing "one" element, `fill_left` for a missing "many".
            let (fill_many, fill_one) = (m.fill_lhs, m.fill_rhs);
            if (mv.is_empty() && ov.is_empty())
                || ((mv.is_empty() || ov.is_empty()) && m.fill_lhs.is_none() && m.fill_rhs.is_none())
            {
                continue;
            }
            one_by_sig.clear();
            for &(j, v) in &ov {
                if let Some(&(prev, _)) = one_by_sig.get(&osig[j]) {
                    return Err(self.duplicate_on_one_side(m, &one[j].labels, &one[prev].labels, swapped));
                }
                one_by_sig.insert(osig[j], (j, v));
            }
            matched_one_to_one.clear();
            matched_many.clear();
            let mut do_op = |i: usize,
                             lv: f64,
                             j: usize,
                             rv: f64,
                             sig: u64,
                             out: &mut Assembler,
                             matched_one_to_one: &mut HashMap<u64, ()>,
                             matched_many: &mut HashMap<u64, Vec<u64>>|
             -> Result<(), QueryError> {
                let (l, r) = if swapped { (rv, lv) } else { (lv, rv) };
                let (mut value, keep) = apply(b.op, l, r);
                if b.return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                }
                let labels = result_labels
                    .entry((i, j))
                    .or_insert_with(|| {
                        let many_labels = if i == usize::MAX { None } else { Some(&*many[i].labels) };
                        let one_labels = if j == usize::MAX { None } else { Some(&*one[j].labels) };
                        Arc::new(result_metric(many_labels, one_labels, b.op, m))
                    })
                    .clone();
                if m.card == Cardinality::OneToOne {
                    if matched_one_to_one.insert(sig, ()).is_some() {
                        return Err(QueryError::Execution(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                        ));
                    }
                } else {
                    let h = labels.hash();
                    let seen = matched_many.entry(sig).or_default();
                    if seen.contains(&h) {
                        return Err(QueryError::Execution(
                            "multiple matches for labels: grouping labels must ensure unique matches".into(),
                        ));
                    }
                    seen.push(h);
                }
                if !keep && !b.return_bool {
                    return Ok(());
                }
                let slot = match (out.instant_mode(), slots.get(&(i, j))) {
                    (false, Some(&x)) => x,
                    _ => {
                        let x = out.slot(&labels, b.return_bool);
                        slots.insert((i, j), x);
                        x
                    }
                };
                out.push(slot, ts, value)
            };
            for &(i, v) in &mv {
                match one_by_sig.get(&msig[i]) {
                    Some(&(j, ov)) => {
                        do_op(i, v, j, ov, msig[i], &mut out, &mut matched_one_to_one, &mut matched_many)?
                    }
                    None => {
                        if let Some(fill) = fill_one {
                            do_op(
                                i,
                                v,
                                usize::MAX,
                                fill,
                                msig[i],
                                &mut out,
                                &mut matched_one_to_one,
                                &mut matched_many,
                            )?;
                        }
                    }
                }
            }
            if let Some(fill) = fill_many {
                for &(j, v) in &ov {
                    let sig = osig[j];
                    let done = if m.card == Cardinality::OneToOne {
                        matched_one_to_one.contains_key(&sig)
                    } else {
                        matched_many.get(&sig).is_some_and(|s| !s.is_empty())
                    };
                    if !done {
                        do_op(
                            usize::MAX,
                            fill,
                            j,
                            v,
                            sig,
                            &mut out,
                            &mut matched_one_to_one,
                            &mut matched_many,
                        )?;
                    }
                }
            }
        }
        Ok(out.finish())
    }

    fn duplicate_on_one_side(&self, m: &VectorMatching, a: &Labels, b: &Labels, swapped: bool) -> QueryError {
        let matched = match_labels(a, m);
        let (mut d1, mut d2) = (a.to_string(), b.to_string());
        if d1 > d2 {
            std::mem::swap(&mut d1, &mut d2);
        }
        let side = if swapped { "left" } else { "right" };
        QueryError::Execution(format!(
            "found duplicate series for the match group {matched} on the {side} hand-side of the operation: [{d1}, {d2}];many-to-many matching not allowed: matching labels must be unique on one side"
        ))
    }
}

/// The labels a series is matched on (for messages and fill values).
fn match_labels(l: &Labels, m: &VectorMatching) -> Labels {
    let mut b = l.builder();
    if m.on {
        b.retain(|x| m.labels.contains(&x.name));
    } else {
        b.del(crate::model::METRIC_NAME);
        for n in &m.labels {
            b.del(n);
        }
    }
    b.labels()
}

/// The labels of a result element: the "many" side's labels (or, for a fill value, the other
/// side's matching labels), without the metric name for arithmetic, restricted for one-to-one
/// matching, plus the `group_x` labels taken from the "one" side.
fn result_metric(many: Option<&Labels>, one: Option<&Labels>, op: BinOp, m: &VectorMatching) -> Labels {
    let base = match (many, one) {
        (Some(l), _) => l.clone(),
        (None, Some(o)) => match_labels(o, m),
        (None, None) => Labels::empty(),
    };
    let one = match (many, one) {
        (_, Some(o)) => o.clone(),
        (Some(l), None) => match_labels(l, m),
        (None, None) => Labels::empty(),
    };
    let mut b = base.builder();
    if op.changes_metric_schema() {
        for n in METADATA_LABELS {
            b.del(n);
        }
    }
    if m.card == Cardinality::OneToOne {
        if m.on {
            b.retain(|x| m.labels.contains(&x.name));
        } else {
            for n in &m.labels {
                b.del(n);
            }
        }
    }
    for n in &m.include {
        match one.get(n) {
            Some(v) => b.set(n, v),
            None => b.del(n),
        }
    }
    b.labels()
}
