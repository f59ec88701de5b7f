//! Which charts a run or a merged sweep gets, from its data. A chart whose
//! data is absent (no NAT matrix, no per-broadcast entries, no time series,
//! a sweep over something other than a failure fraction) is left out.

use crate::charts::{latency_cdf, liveness, messages, nat_matrix, redundancy, reliability, Figure};
use crate::hdr::{self, HdrError};
use crate::merge::Merged;
use crate::view::RunReport;

/// Charts for one run.
pub fn for_run(r: &RunReport) -> Result<Vec<Figure>, HdrError> {
    let mut figures = Vec::new();
    let mut curves = Vec::new();
    for p in r.phases.iter().filter(|p| p.broadcast.count > 0) {
        let h = hdr::decode(&p.broadcast.latency_us_hdr)?;
        curves.push((
            format!("{} ({}-{} s)", p.name, p.start_s, p.end_s),
            latency_cdf::points(&h),
        ));
    }
    if curves.iter().any(|c| !c.1.is_empty()) {
        figures.push(Figure::LatencyCdf(latency_cdf::Data { curves }));
    }
    if !r.broadcasts.is_empty() {
        figures.push(Figure::Redundancy(redundancy::Data {
            rmr: r
                .broadcasts
                .iter()
                .filter_map(|b| Some((b.at_s, b.rmr?)))
                .collect(),
            ldh: r
                .broadcasts
                .iter()
                .map(|b| (b.at_s, f64::from(b.ldh)))
                .collect(),
            events: r.fault_events(),
            duration_s: r.duration_s,
        }));
    }
    // Issue 4's `Report::timeseries`: read from the JSON when present, so
    // this chart appears with no further wiring once reports carry it.
    if let Some(ts) = &r.timeseries {
        let total = r.nodes.total.max(1) as f64;
        let frac = |v: &[u32]| v.iter().map(|&x| f64::from(x) / total).collect();
        figures.push(Figure::Liveness(liveness::Data {
            t_s: ts.t_s.clone(),
            live: frac(&ts.live),
            connected: frac(&ts.connected),
            largest_component: frac(&ts.largest_component),
            reliability: ts
                .t_s
                .iter()
                .zip(&ts.reliability)
                .filter_map(|(&t, r)| Some((t, (*r)?)))
                .collect(),
            windows: r.fault_windows(),
            events: r.fault_events(),
        }));
    }
    let q = &r.messages_per_node.quantiles;
    if q.len() > 1 {
        let step = 100.0 / (q.len() - 1) as f64;
        figures.push(Figure::Messages(messages::Data {
            quantiles: q
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64 * step, v as f64))
                .collect(),
            mean: r.messages_per_node.mean,
        }));
    }
    if let Some(nat) = r.nat.as_ref().filter(|n| !n.matrix.is_empty()) {
        let mut labels: Vec<String> = Vec::new();
        for key in nat.matrix.keys() {
            for l in key.split('/') {
                if !labels.iter().any(|x| x == l) {
                    labels.push(l.to_owned());
                }
            }
        }
        labels.sort();
        let pos = |l: &str| labels.iter().position(|x| x == l).expect("collected above");
        let cells = nat
            .matrix
            .iter()
            .filter_map(|(key, c)| {
                let (a, b) = key.split_once('/')?;
                (c.pairs > 0).then(|| (pos(a), pos(b), c.direct_fraction, c.failed > 0))
            })
            .collect();
        figures.push(Figure::NatMatrix(nat_matrix::Data { labels, cells }));
    }
    Ok(figures)
}

/// Charts for a merged sweep (one seed or many).
pub fn for_sweep(m: &Merged) -> Result<Vec<Figure>, HdrError> {
    let mut figures = Vec::new();
    let failure_param = m
        .cells
        .first()
        .and_then(|c| c.param.as_ref())
        .and_then(|p| {
            let numeric = m.cells.iter().all(|c| {
                c.param
                    .as_ref()
                    .is_some_and(|q| q.param == p.param && q.value.is_number())
            });
            (numeric && p.param.ends_with("fraction")).then(|| p.param.clone())
        });
    if let Some(param) = failure_param {
        let phases = m.cells[0].phases.len();
        let series = (0..phases)
            .filter(|&i| m.cells.iter().all(|c| c.phases.get(i).is_some()))
            .map(|i| reliability::Series {
                // Phase names carry the cell's own fraction; name by role.
                name: match i {
                    0 => "before the first event".to_owned(),
                    _ => format!("after event {i} (from {} s)", m.cells[0].phases[i].start_s),
                },
                points: m
                    .cells
                    .iter()
                    .filter_map(|c| {
                        let x = c.param.as_ref()?.value.as_f64()? * 100.0;
                        let s = c.phases[i].metrics.get("reliability_mean")?;
                        Some((x, s.mean, s.min, s.max))
                    })
                    .collect(),
            })
            .filter(|s: &reliability::Series| !s.points.is_empty())
            .collect();
        figures.push(Figure::Reliability(reliability::Data { param, series }));
    }
    let mut curves = Vec::new();
    for c in &m.cells {
        let h = hdr::decode(&c.all.latency_us_hdr)?;
        let name = match &c.param {
            Some(p) => format!("{} = {}", p.param, p.value),
            None => "all broadcasts".to_owned(),
        };
        curves.push((name, latency_cdf::points(&h)));
    }
    if curves.iter().any(|c| !c.1.is_empty()) {
        figures.push(Figure::LatencyCdf(latency_cdf::Data { curves }));
    }
    Ok(figures)
}
