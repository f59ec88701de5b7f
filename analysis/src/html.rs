//! `report.html`: one self-contained page per run or merged sweep for
//! design reviews. The summary, the checks, every chart inline as SVG, the
//! scenario text and the command that reproduces the run. No external
//! reference of any kind (no URL, no font, no script source), so it opens
//! offline; a small inline script sets `data-ready="ok"` on `<body>` once
//! the page has loaded with every chart drawn and no script error (the
//! headless-browser test reads it).

use std::fmt::Write as _;

use crate::charts::Rendered;
use crate::merge::Merged;
use crate::view::RunReport;

/// Text made safe for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.pass{color:#1a7f37}.fail{color:#c62828;font-weight:bold}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}pre{background:#f6f6f6;padding:1em;overflow-x:auto}";

const SCRIPT: &str = "var failed=false;window.addEventListener('error',function(){failed=true;});\
window.addEventListener('load',function(){var f=document.querySelectorAll('figure');var ok=!failed;\
for(var i=0;i<f.length;i++){var s=f[i].querySelector('svg');if(!s){ok=false;continue;}\
var b=s.getBoundingClientRect();if(!(b.width>0&&b.height>0&&s.childElementCount>0)){ok=false;}}\
document.body.setAttribute('data-charts',String(f.length));\
document.body.setAttribute('data-ready',ok?'ok':'broken');});";

/// plotters' SVG, ready to inline: the namespace attribute (a URL, and
/// implied in HTML) dropped.
fn inline_svg(svg: &str) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

fn page(
    title: &str,
    body: &str,
    charts: &[Rendered],
    scenario_text: Option<&str>,
    reproduce: &str,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style><script>{SCRIPT}</script></head>\n<body data-ready=\"loading\">\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    s += body;
    s += "<h2>Charts</h2>\n";
    for c in charts {
        let _ = write!(
            s,
            "<figure id=\"{}\"><figcaption>{}</figcaption>\n{}\n</figure>\n",
            c.name,
            escape(c.title),
            inline_svg(&c.svg)
        );
    }
    let _ = write!(
        s,
        "<h2>Reproduce</h2>\n<pre><code>{}</code></pre>\n",
        escape(reproduce)
    );
    if let Some(text) = scenario_text {
        let _ = write!(s, "<h2>Scenario</h2>\n<pre>{}</pre>\n", escape(text));
    }
    s += "</body></html>\n";
    s
}

fn f4(x: f64) -> String {
    format!("{x:.4}")
}

/// The page for one run.
pub fn run_page(r: &RunReport, charts: &[Rendered], scenario_text: Option<&str>) -> String {
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<p>Scenario <code>{}</code>, seed {}{}: {} nodes, {} alive at the end. Overlay: {} component(s), \
         {} isolated, largest component {:.1}%, average path {:.2}, clustering {:.4}. \
         Datagrams per node: mean {:.0}.</p>",
        escape(&r.scenario.file),
        r.seed,
        r.scenario
            .cell
            .as_ref()
            .map(|c| format!(", {} = {}", escape(&c.param), escape(&c.value.to_string())))
            .unwrap_or_default(),
        r.nodes.total,
        r.nodes.alive_at_end,
        r.overlay.components,
        r.overlay.isolated,
        r.overlay.largest_component_fraction * 100.0,
        r.overlay.average_shortest_path,
        r.overlay.clustering_coefficient,
        r.messages_per_node.mean,
    );
    b += "<h2>Summary</h2>\n<table><tr><th>phase</th><th>from s</th><th>to s</th><th>broadcasts</th>\
          <th>reliability mean</th><th>min</th><th>latency p50 ms</th><th>p90</th><th>p99</th><th>RMR</th><th>LDH</th></tr>\n";
    let rows = r
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.start_s, p.end_s, &p.broadcast))
        .chain([("all", 0.0, r.duration_s, &r.broadcast)]);
    for (name, a, z, s) in rows {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{a}</td><td>{z}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.3}</td><td>{:.1}</td></tr>",
            escape(name),
            s.count,
            f4(s.reliability.mean),
            f4(s.reliability.min),
            s.latency_ms.p50,
            s.latency_ms.p90,
            s.latency_ms.p99,
            s.rmr.mean,
            s.ldh.mean
        );
    }
    b += "</table>\n";
    let verdict = if r.passed {
        "<span class=\"pass\">all passed</span>"
    } else {
        "<span class=\"fail\">FAILED</span>"
    };
    let _ = writeln!(b, "<h2>Checks: {verdict}</h2>");
    if !r.checks.is_empty() {
        b += "<table><tr><th>metric</th><th>value</th><th>min</th><th>max</th><th>result</th></tr>\n";
        for c in &r.checks {
            let num = |x: Option<f64>| x.map_or("-".to_owned(), |x| x.to_string());
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                escape(&c.metric),
                num(c.value),
                num(c.min),
                num(c.max),
                if c.passed { "pass" } else { "fail" },
                if c.passed { "pass" } else { "FAIL" }
            );
        }
        b += "</table>\n";
    }
    let title = format!("Grove report: {} (seed {})", r.scenario.name, r.seed);
    page(&title, &b, charts, scenario_text, &r.reproduce)
}

/// The page for a merged sweep.
pub fn sweep_page(m: &Merged, charts: &[Rendered], scenario_text: Option<&str>) -> String {
    let mut b = String::new();
    let seeds: Vec<String> = m.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(
        b,
        "<p>Scenario <code>{}</code>, {} cell(s) x {} seed(s) ({}). Each value is the mean across seeds, \
         with the range [min, max]; latencies come from the merged histograms of all seeds.</p>",
        escape(&m.scenario.file),
        m.cells.len(),
        m.seeds.len(),
        seeds.join(", ")
    );
    b += "<h2>Summary</h2>\n<table><tr><th>cell</th><th>phase</th><th>reliability mean</th><th>[min, max]</th>\
          <th>latency p50 ms</th><th>p99</th><th>RMR</th><th>LDH</th><th>runs passed</th></tr>\n";
    for c in &m.cells {
        let cell = c
            .param
            .as_ref()
            .map(|p| format!("{} = {}", p.param, p.value))
            .unwrap_or_else(|| "-".into());
        for p in c.phases.iter().chain([&c.all]) {
            let get = |k: &str| {
                p.metrics
                    .get(k)
                    .map(|s| (s.mean, s.min, s.max))
                    .unwrap_or_default()
            };
            let (rel, lo, hi) = get("reliability_mean");
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{:.0}</td><td>{:.0}</td><td>{:.3}</td><td>{:.1}</td><td>{}/{}</td></tr>",
                escape(&cell),
                escape(&p.name),
                f4(rel),
                f4(lo),
                f4(hi),
                p.latency_ms.p50,
                p.latency_ms.p99,
                get("rmr_mean").0,
                get("ldh_mean").0,
                c.runs_passed,
                c.runs
            );
        }
    }
    b += "</table>\n";
    let verdict = if m.passed {
        "<span class=\"pass\">every run passed</span>"
    } else {
        "<span class=\"fail\">some runs FAILED</span>"
    };
    let _ = writeln!(b, "<h2>Checks: {verdict}</h2>");
    let title = format!("Grove sweep: {}", m.scenario.name);
    page(&title, &b, charts, scenario_text, &m.reproduce)
}
