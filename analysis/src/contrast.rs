//! Contrasts: bounds on the difference of one report value between two
//! cells of a sweep, for a feature whose value *is* a difference. Peer
//! scoring is worth what the honest nodes gain with it on over the same run
//! with it off; a bound on either cell alone passes when scoring is broken
//! but the attack happens to be mild.
//!
//! A scenario lists them as `[[contrasts]]` (`metric`, `cell`, `minus`,
//! `min` and/or `max` on `value(cell) - value(minus)`). Each run's report
//! carries the list in `scenario.contrasts`, so that the merge of a sweep,
//! whose cells ran in separate processes, can evaluate them seed by seed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::merge::{lookup, round6};

/// `value(cell) - value(minus)` of `metric` must lie in `[min, max]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contrast {
    /// Dotted path into a cell's report, as in `[[checks]]`.
    pub metric: String,
    /// The cell whose value is the minuend (0-based, in sweep order).
    pub cell: usize,
    /// The cell whose value is subtracted.
    pub minus: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A contrast evaluated on one or more seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContrastResult {
    #[serde(flatten)]
    pub contrast: Contrast,
    /// The difference on each seed (None where a value was missing or not
    /// a number: that seed fails).
    pub per_seed: Vec<Option<f64>>,
    /// Mean of the differences that could be computed.
    pub mean: f64,
    /// Seeds on which the difference lay within the bounds.
    pub passed_seeds: usize,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Contrast {
    /// Whether the scenario's sweep has both cells; the message when not.
    pub fn validate(&self, cells: usize) -> Result<(), String> {
        if self.min.is_none() && self.max.is_none() {
            return Err(format!(
                "contrast of `{}` has neither `min` nor `max`",
                self.metric
            ));
        }
        if self.cell == self.minus {
            return Err(format!(
                "`cell` and `minus` are both {}: a contrast compares two cells",
                self.cell
            ));
        }
        if let Some(c) = [self.cell, self.minus].into_iter().find(|&c| c >= cells) {
            return Err(format!(
                "cell {c} does not exist: the sweep has {cells} cell(s), numbered from 0"
            ));
        }
        Ok(())
    }

    /// Evaluate on one seed's reports, indexed by cell.
    pub fn evaluate(&self, cells: &[&Value]) -> Result<f64, String> {
        let value = |cell: usize| -> Result<f64, String> {
            let report = cells
                .get(cell)
                .ok_or_else(|| format!("cell {cell} did not run"))?;
            let v = lookup(report, &self.metric)
                .ok_or_else(|| format!("`{}` is not in cell {cell}'s report", self.metric))?;
            v.as_f64()
                .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                .ok_or_else(|| format!("`{}` is not a number in cell {cell}", self.metric))
        };
        Ok(round6(value(self.cell)? - value(self.minus)?))
    }

    fn within(&self, d: f64) -> bool {
        self.min.is_none_or(|m| d >= m) && self.max.is_none_or(|m| d <= m)
    }

    /// Evaluate over seeds: `seeds[k]` holds seed k's reports by cell.
    pub fn evaluate_seeds(&self, seeds: &[Vec<&Value>]) -> ContrastResult {
        let mut error = None;
        let per_seed: Vec<Option<f64>> = seeds
            .iter()
            .map(|cells| {
                self.evaluate(cells)
                    .map_err(|e| error.get_or_insert(e).clone())
                    .ok()
            })
            .collect();
        let got: Vec<f64> = per_seed.iter().flatten().copied().collect();
        let passed_seeds = got.iter().filter(|&&d| self.within(d)).count();
        ContrastResult {
            contrast: self.clone(),
            mean: round6(got.iter().sum::<f64>() / got.len().max(1) as f64),
            passed: passed_seeds == seeds.len() && !seeds.is_empty(),
            passed_seeds,
            per_seed,
            error,
        }
    }
}

/// One line: `PASS pubsub.honest.delivery_rate: cell 0 - cell 1 = 0.0109,
/// 0.0243 (want >= 0.005)`, the bound worded as a check's.
impl std::fmt::Display for ContrastResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.contrast;
        let values: Vec<String> = self
            .per_seed
            .iter()
            .map(|d| d.map_or("-".to_owned(), |d| d.to_string()))
            .collect();
        write!(
            f,
            "{} {}: cell {} - cell {} = {}",
            if self.passed { "PASS" } else { "FAIL" },
            c.metric,
            c.cell,
            c.minus,
            values.join(", ")
        )?;
        match (c.min, c.max) {
            (Some(a), Some(b)) => write!(f, " (want {a}..={b})")?,
            (Some(a), None) => write!(f, " (want >= {a})")?,
            (None, Some(b)) => write!(f, " (want <= {b})")?,
            (None, None) => {}
        }
        match &self.error {
            Some(e) => write!(f, ": {e}"),
            None => Ok(()),
        }
    }
}

/// The contrasts a run's report carries (`scenario.contrasts`), if any.
pub fn of_report(report: &Value) -> Result<Vec<Contrast>, String> {
    match lookup(report, "scenario.contrasts") {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("`scenario.contrasts` in a report: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scoring_gain(min: f64) -> Contrast {
        Contrast {
            metric: "pubsub.honest.delivery_rate".into(),
            cell: 0,
            minus: 1,
            min: Some(min),
            max: None,
        }
    }

    #[test]
    fn the_difference_is_bounded_seed_by_seed() {
        let on = [
            json!({"pubsub": {"honest": {"delivery_rate": 0.999}}}),
            json!({"pubsub": {"honest": {"delivery_rate": 0.998}}}),
        ];
        let off = [
            json!({"pubsub": {"honest": {"delivery_rate": 0.98}}}),
            json!({"pubsub": {"honest": {"delivery_rate": 0.995}}}),
        ];
        let seeds = vec![vec![&on[0], &off[0]], vec![&on[1], &off[1]]];
        let r = scoring_gain(0.005).evaluate_seeds(&seeds);
        assert_eq!(r.per_seed, vec![Some(0.019), Some(0.003)]);
        assert_eq!(r.passed_seeds, 1);
        assert!(!r.passed, "the second seed gains only 0.003");
        assert_eq!(r.mean, 0.011);
        let r = scoring_gain(0.002).evaluate_seeds(&seeds);
        assert!(r.passed && r.passed_seeds == 2 && r.error.is_none());
        assert_eq!(
            r.to_string(),
            "PASS pubsub.honest.delivery_rate: cell 0 - cell 1 = 0.019, 0.003 (want >= 0.002)"
        );
    }

    #[test]
    fn a_missing_value_fails_and_says_where() {
        let on = json!({"pubsub": {"honest": {"delivery_rate": 0.999}}});
        let off = json!({"pubsub": {}});
        let r = scoring_gain(0.0).evaluate_seeds(&[vec![&on, &off]]);
        assert!(!r.passed);
        assert_eq!(r.per_seed, vec![None]);
        assert_eq!(
            r.error.as_deref(),
            Some("`pubsub.honest.delivery_rate` is not in cell 1's report")
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = scoring_gain(0.0);
        assert!(c.validate(2).is_ok());
        assert!(c.validate(1).unwrap_err().contains("cell 1 does not exist"));
        c.minus = 0;
        assert!(c.validate(2).unwrap_err().contains("both 0"));
        c.minus = 1;
        c.min = None;
        assert!(c.validate(2).unwrap_err().contains("neither"));
    }
}
