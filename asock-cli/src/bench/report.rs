//! What a run measured, printed for people (a summary and one `key=value` line) or as one JSON
//! object (serialized by serde).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{mode_name, BenchArgs};

/// What a run measured.
pub struct Report {
    pub msgs: u64,
    pub bytes: u64,
    pub secs: f64,
    pub hist: Histogram<u64>,
    pub errors: usize,
    pub connections: usize,
    pub server_cpu: Option<Duration>,
    pub client_cpu: Option<Duration>,
    /// CPU the rest of the machine used meanwhile (noise), when the server's is known.
    pub other_cpu: Option<Duration>,
    /// `--udp --mode stream`: datagrams sent, echoed, lost and out of order (whole run).
    pub udp: Option<(u64, u64, u64, u64)>,
}

/// The `--json` object.
#[derive(Serialize)]
struct Json<'a> {
    addr: &'a str,
    mode: &'static str,
    lines: bool,
    connections: usize,
    size: usize,
    secs: f64,
    msgs: u64,
    bytes: u64,
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    errors: usize,
    client_cpu_pct: Option<f64>,
    client_cpu_us_per_msg: Option<f64>,
    server_cpu_pct: Option<f64>,
    server_cpu_us_per_msg: Option<f64>,
    other_cpu_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp_lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp_reordered: Option<u64>,
}

/// `v` rounded to `places` decimals (the JSON carries no false precision).
fn round(v: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (v * m).round() / m
}

impl Report {
    fn msgs_per_s(&self) -> f64 {
        self.msgs as f64 / self.secs
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn pct_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
    fn us_per_msg(&self, cpu: Option<Duration>) -> Option<f64> {
        let cpu = cpu?;
        (self.msgs > 0).then(|| cpu.as_secs_f64() * 1e6 / self.msgs as f64)
    }
    fn cpu_pct(&self, cpu: Option<Duration>) -> Option<f64> {
        Some(cpu?.as_secs_f64() / self.secs * 100.0)
    }

    /// One line of `key=value` pairs, for scripts.
    pub fn machine_line(&self) -> String {
        let mut s = format!(
            "msgs_per_s={:.0} mb_per_s={:.2} p50_us={:.1} p99_us={:.1} p999_us={:.1} errors={} \
             msgs={} secs={:.3} max_us={:.1}",
            self.msgs_per_s(),
            self.mb_per_s(),
            self.pct_us(0.5),
            self.pct_us(0.99),
            self.pct_us(0.999),
            self.errors,
            self.msgs,
            self.secs,
            self.max_us(),
        );
        if let Some(c) = self.cpu_pct(self.client_cpu) {
            s += &format!(" client_cpu_pct={c:.1}");
        }
        if let Some(us) = self.us_per_msg(self.client_cpu) {
            s += &format!(" client_cpu_us_per_msg={us:.3}");
        }
        if let (Some(us), Some(pct)) = (
            self.us_per_msg(self.server_cpu),
            self.cpu_pct(self.server_cpu),
        ) {
            s += &format!(" server_cpu_us_per_msg={us:.3} server_cpu_pct={pct:.1}");
        }
        if let Some(o) = self.cpu_pct(self.other_cpu) {
            s += &format!(" other_cpu_pct={o:.1}");
        }
        if let Some((sent, _, lost, reordered)) = self.udp {
            s += &format!(" sent={sent} lost={lost} reordered={reordered}");
        }
        s
    }

    /// The run as one JSON object.
    pub fn json(&self, args: &BenchArgs) -> String {
        let r3 = |v: Option<f64>| v.map(|v| round(v, 3));
        let j = Json {
            addr: &args.addr,
            mode: mode_name(args.mode),
            lines: args.lines,
            connections: self.connections,
            size: args.size(),
            secs: round(self.secs, 3),
            msgs: self.msgs,
            bytes: self.bytes,
            msgs_per_s: round(self.msgs_per_s(), 1),
            mb_per_s: round(self.mb_per_s(), 3),
            p50_us: round(self.pct_us(0.5), 1),
            p90_us: round(self.pct_us(0.9), 1),
            p99_us: round(self.pct_us(0.99), 1),
            p999_us: round(self.pct_us(0.999), 1),
            max_us: round(self.max_us(), 1),
            errors: self.errors,
            client_cpu_pct: r3(self.cpu_pct(self.client_cpu)),
            client_cpu_us_per_msg: r3(self.us_per_msg(self.client_cpu)),
            server_cpu_pct: r3(self.cpu_pct(self.server_cpu)),
            server_cpu_us_per_msg: r3(self.us_per_msg(self.server_cpu)),
            other_cpu_pct: r3(self.cpu_pct(self.other_cpu)),
            udp_sent: self.udp.map(|u| u.0),
            udp_lost: self.udp.map(|u| u.2),
            udp_reordered: self.udp.map(|u| u.3),
        };
        serde_json::to_string(&j).expect("a report of numbers and strings serializes")
    }

    /// The summary for people.
    pub fn human(&self, args: &BenchArgs) -> String {
        let mut s = format!(
            "asock bench {}: {}{}, {} connection{} x {} B, {:.2} s measured\n",
            args.addr,
            mode_name(args.mode),
            if args.lines { " (lines)" } else { "" },
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            args.size(),
            self.secs,
        );
        s += &format!(
            "  messages    {} echoed, {:.0} msgs/s\n  throughput  {:.2} MB/s each way\n",
            self.msgs,
            self.msgs_per_s(),
            self.mb_per_s()
        );
        s += &format!(
            "  latency     p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us\n",
            self.pct_us(0.5),
            self.pct_us(0.9),
            self.pct_us(0.99),
            self.pct_us(0.999),
            self.max_us(),
        );
        if let (Some(pct), Some(us)) = (
            self.cpu_pct(self.client_cpu),
            self.us_per_msg(self.client_cpu),
        ) {
            s += &format!(
                "  load CPU    {pct:.1}% of one core, {us:.2} us per message (this process: user + sys)\n"
            );
        }
        if let (Some(us), Some(pct)) = (
            self.us_per_msg(self.server_cpu),
            self.cpu_pct(self.server_cpu),
        ) {
            s += &format!("  server CPU  {pct:.1}% of one core, {us:.2} us per message\n");
        }
        if let Some(o) = self.cpu_pct(self.other_cpu) {
            s += &format!("  other CPU   {o:.1}% of one core (the rest of the machine: noise)\n");
        }
        if let Some((sent, echoed, lost, reordered)) = self.udp {
            s += &format!(
                "  datagrams   {sent} sent, {echoed} echoed, {lost} lost ({:.3}%), {reordered} out of order (whole run, warm-up included)\n",
                lost as f64 * 100.0 / sent.max(1) as f64
            );
        }
        s += &format!("  errors      {}\n", self.errors);
        s
    }
}
