//! The picture of a run: `plot.png` in its results folder, drawn from
//! `history.jsonl` and `faults.jsonl` alone (so an old run's folder can be
//! drawn again). Two panels share the time axis, in seconds since the
//! run's first invocation: transfers per second per region, and the
//! latency of acknowledged calls; the fault periods are shaded on both.
//!
//! Text needs a font: DejaVu Sans is read at run time from where the
//! distributions put it. Without it the plot is drawn without any text
//! (said on stderr) rather than not at all.

use crate::history::{Call, History, Outcome};
use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The plot's name in a results folder.
pub const FILE: &str = "plot.png";
pub const WIDTH: u32 = 1600;
pub const HEIGHT: u32 = 900;
/// One bin of the time axis: a second.
const BIN_NS: u128 = 1_000_000_000;
/// A day of seconds: a history with a call later than that (a wrong
/// clock) is drawn up to it, not with a bin for every second in between.
const BINS_MAX: usize = 86_400;
/// Where the distributions put DejaVu Sans, in the order tried.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
/// Both the file and the tests' buffer are bitmaps.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;
/// The fault periods' colour, opaque so that a test can find it.
pub const SHADE: RGBColor = RGBColor(255, 222, 222);
const FAULT_TEXT: RGBColor = RGBColor(170, 30, 30);
const REGION_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];
/// The log axis has no zero: shorter latencies are drawn at this.
const LATENCY_MS_MIN: f64 = 0.1;

/// One region's calls in one-second bins, by the second each completed in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionBins {
    pub acknowledged: Vec<u64>,
    /// Not sent or of unknown outcome. Refusals are decisions, not failures,
    /// and are not counted.
    pub failed: Vec<u64>,
    /// p50 and max of the acknowledged calls' latency in ms; `None` in a
    /// second with no acknowledged call.
    pub latency_ms: Vec<Option<[f64; 2]>>,
}

/// A fault as `faults.jsonl` holds it (see `scenario::FaultPeriod`): only
/// what the plot needs.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Fault {
    pub nemesis: String,
    pub what: String,
    pub from_ns: u128,
    pub to_ns: u128,
}

/// A fault period on the time axis, in seconds since the first invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub name: String,
    /// What it did (`region 1 cut off`).
    pub what: String,
    pub from_s: f64,
    pub to_s: f64,
}

/// Everything drawn, prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub regions: BTreeMap<u32, RegionBins>,
    pub bands: Vec<Band>,
    /// The time axis's end, in seconds.
    pub end_s: f64,
}

/// Reads the folder's `history.jsonl` and `faults.jsonl` and writes its
/// `plot.png`; answers the plot's path.
pub fn write(out: &Path) -> anyhow::Result<PathBuf> {
    let history = History::read(&out.join("history.jsonl"))?;
    let faults = read_faults(&out.join("faults.jsonl"))?;
    let picture = Picture::of(&history.calls, &faults)
        .with_context(|| format!("nothing to plot in {}", out.display()))?;
    let path = out.join(FILE);
    let text = font_loaded();
    {
        let root = BitMapBackend::new(&path, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, &picture, text)?;
        root.present()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// What a summary says after the results folder's name: where the plot
/// is, when there is one.
pub fn mention(out: &Path) -> String {
    if out.join(FILE).exists() {
        format!(" (throughput and latency over time: {FILE})")
    } else {
        String::new()
    }
}

/// The faults of `faults.jsonl`, one JSON object a line.
pub fn read_faults(path: &Path) -> anyhow::Result<Vec<Fault>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}", path.display(), number + 1))
        })
        .collect()
}

impl Picture {
    /// `None` when no call completed: there is no time axis to draw.
    pub fn of(calls: &[Call], faults: &[Fault]) -> Option<Self> {
        let origin_ns = origin_ns(calls)?;
        let regions = bins(calls, origin_ns, BIN_NS);
        let bands = bands(faults, origin_ns);
        let bins_end = regions
            .values()
            .map(|bins| bins.acknowledged.len())
            .max()
            .unwrap_or(0) as f64;
        let end_s = bands.iter().map(|band| band.to_s).fold(bins_end, f64::max);
        Some(Self {
            regions,
            bands,
            end_s: end_s.max(1.0),
        })
    }
}

impl Picture {
    /// The most calls of one region and kind in one second.
    pub fn most_per_second(&self) -> u64 {
        let counts = |bins: &RegionBins| {
            let all = bins.acknowledged.iter().chain(&bins.failed);
            all.copied().max().unwrap_or(0)
        };
        self.regions.values().map(counts).max().unwrap_or(0)
    }

    /// The longest acknowledged call, in ms; 0 when none was acknowledged.
    pub fn longest_ms(&self) -> f64 {
        let longest = |bins: &RegionBins| {
            let maxima = bins.latency_ms.iter().flatten().map(|[_, max]| *max);
            maxima.fold(0.0, f64::max)
        };
        self.regions.values().map(longest).fold(0.0, f64::max)
    }
}

/// The run's first invocation, the time axis's zero.
pub fn origin_ns(calls: &[Call]) -> Option<u128> {
    calls.iter().map(|call| call.invoked_ns).min()
}

/// Every region's calls in bins of `bin_ns` from `origin_ns`, each call in
/// the bin it completed in; every region has the same number of bins.
pub fn bins(calls: &[Call], origin_ns: u128, bin_ns: u128) -> BTreeMap<u32, RegionBins> {
    let bin_of = |ns: u128| {
        let bin = ns.saturating_sub(origin_ns) / bin_ns.max(1);
        usize::try_from(bin).map_or(BINS_MAX - 1, |bin| bin.min(BINS_MAX - 1))
    };
    let count = calls
        .iter()
        .map(|call| bin_of(call.completed_ns) + 1)
        .max()
        .unwrap_or(0);
    let empty = || RegionBins {
        acknowledged: vec![0; count],
        failed: vec![0; count],
        latency_ms: vec![None; count],
    };
    let mut regions: BTreeMap<u32, RegionBins> = BTreeMap::new();
    let mut latencies: BTreeMap<(u32, usize), Vec<u128>> = BTreeMap::new();
    for call in calls {
        let bin = bin_of(call.completed_ns);
        let region = regions.entry(call.region).or_insert_with(empty);
        match call.outcome {
            Outcome::Ok { .. } => {
                region.acknowledged[bin] += 1;
                let took_ns = call.completed_ns.saturating_sub(call.invoked_ns);
                latencies
                    .entry((call.region, bin))
                    .or_default()
                    .push(took_ns);
            }
            Outcome::NotSent { .. } | Outcome::Unknown { .. } => region.failed[bin] += 1,
            Outcome::Refused { .. } => {}
        }
    }
    for ((region, bin), mut times) in latencies {
        times.sort_unstable();
        let at = |share| percentile(&times, share).map_or(0.0, |ns| ns as f64 / 1e6);
        if let Some(bins) = regions.get_mut(&region) {
            bins.latency_ms[bin] = Some([at(0.5), at(1.0)]);
        }
    }
    regions
}

/// The nearest-rank percentile of `sorted` (ascending): the smallest value
/// with at least `share` of the values at or below it.
pub fn percentile(sorted: &[u128], share: f64) -> Option<u128> {
    let rank = (sorted.len() as f64 * share).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The faults on the time axis; one that began before the first
/// invocation is drawn from zero.
pub fn bands(faults: &[Fault], origin_ns: u128) -> Vec<Band> {
    let seconds = |ns: u128| ns.saturating_sub(origin_ns) as f64 / 1e9;
    faults
        .iter()
        .map(|fault| Band {
            name: fault.nemesis.clone(),
            what: fault.what.clone(),
            from_s: seconds(fault.from_ns),
            to_s: seconds(fault.to_ns.max(fault.from_ns)),
        })
        .collect()
}

/// The runs of values present, as points at the middle of their bins: a
/// second without a value breaks the line rather than bridging it.
pub fn segments(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for (bin, value) in values.iter().enumerate() {
        match value {
            Some(value) => current.push((bin as f64 + 0.5, *value)),
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// Registers DejaVu Sans with plotters, once per process; false (said on
/// stderr) when no font could be loaded.
fn font_loaded() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        for path in FONTS {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // plotters keeps fonts for the process's life.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
        eprintln!(
            "plot: no font could be loaded (tried {}): the plot is drawn without text",
            FONTS.join(", ")
        );
        false
    })
}

/// Both panels on `root`, with text only when `text` (a font is loaded).
pub fn draw(root: &Area<'_>, picture: &Picture, text: bool) -> anyhow::Result<()> {
    root.fill(&WHITE)?;
    let (_, height) = root.dim_in_pixel();
    let (top, bottom) = root.split_vertically(height / 2);
    draw_throughput(&top, picture, text)?;
    draw_latency(&bottom, picture, text)
}

fn draw_throughput(area: &Area<'_>, picture: &Picture, text: bool) -> anyhow::Result<()> {
    let most = picture.most_per_second().max(1);
    let caption =
        "transfers per second by region (solid: acknowledged, dashed: not sent or unknown)";
    // Headroom above the lines, for the legend.
    let mut chart = builder(area, text, caption)
        .build_cartesian_2d(0.0..picture.end_s, 0.0..most as f64 * 1.4)?;
    shade(&mut chart, &picture.bands, text, true)?;
    mesh(&mut chart, text, "transfers / s")?;
    for (index, (region, bins)) in picture.regions.iter().enumerate() {
        let colour = REGION_COLOURS[index % REGION_COLOURS.len()];
        let points = |counts: &[u64]| -> Vec<(f64, f64)> {
            let at = |(bin, count): (usize, &u64)| (bin as f64 + 0.5, *count as f64);
            counts.iter().enumerate().map(at).collect()
        };
        let solid = colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points(&bins.acknowledged), solid))?
            .label(format!("region {region}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], solid));
        let thin = colour.stroke_width(1);
        chart.draw_series(DashedLineSeries::new(points(&bins.failed), 6, 4, thin))?;
    }
    legend(&mut chart, text)
}

fn draw_latency(area: &Area<'_>, picture: &Picture, text: bool) -> anyhow::Result<()> {
    let longest = picture.longest_ms().max(LATENCY_MS_MIN * 10.0);
    let caption = "latency of acknowledged calls, ms, per second (thick: p50, thin: max)";
    let mut chart = builder(area, text, caption).build_cartesian_2d(
        0.0..picture.end_s,
        (LATENCY_MS_MIN..longest * 8.0).log_scale(),
    )?;
    shade(&mut chart, &picture.bands, text, false)?;
    mesh(&mut chart, text, "ms (log scale)")?;
    for (index, (region, bins)) in picture.regions.iter().enumerate() {
        let colour = REGION_COLOURS[index % REGION_COLOURS.len()];
        let (thick, thin) = (colour.stroke_width(2), colour.mix(0.6).stroke_width(1));
        let of = |pick: usize| -> Vec<Option<f64>> {
            let value = |times: &Option<[f64; 2]>| times.map(|t| t[pick].max(LATENCY_MS_MIN));
            bins.latency_ms.iter().map(value).collect()
        };
        // The legend's entry, drawn once: the line itself comes in pieces.
        chart
            .draw_series(LineSeries::new(Vec::<(f64, f64)>::new(), thick))?
            .label(format!("region {region}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], thick));
        for segment in segments(&of(1)) {
            chart.draw_series(LineSeries::new(segment, thin))?;
        }
        for segment in segments(&of(0)) {
            chart.draw_series(LineSeries::new(segment, thick))?;
        }
    }
    legend(&mut chart, text)
}

fn builder<'a, 'b>(
    area: &'a Area<'b>,
    text: bool,
    caption: &str,
) -> ChartBuilder<'a, 'static, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder
            .caption(caption, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    builder
}

/// The fault periods, under everything else, each named at its top left
/// and, with `detail`, said what it did.
fn shade<'a, 'b: 'a, Y>(
    chart: &mut Chart<'a, 'b, Y>,
    bands: &[Band],
    text: bool,
    detail: bool,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let range = chart.y_range();
    let rectangle = |band: &Band| {
        Rectangle::new(
            [(band.from_s, range.start), (band.to_s, range.end)],
            SHADE.filled(),
        )
    };
    chart.draw_series(bands.iter().map(rectangle))?;
    if text {
        // A few pixels in from the band's top left corner, clear of the frame.
        let name_style = ("sans-serif", 15).into_font().color(&FAULT_TEXT);
        let what_style = ("sans-serif", 12).into_font().color(&FAULT_TEXT);
        let label = |band: &Band| {
            let what = if detail { band.what.as_str() } else { "" };
            EmptyElement::at((band.from_s, range.end))
                + Text::new(band.name.clone(), (4, 4), name_style.clone())
                + Text::new(what.to_owned(), (4, 22), what_style.clone())
        };
        chart.draw_series(bands.iter().map(label))?;
    }
    Ok(())
}

fn mesh<'a, 'b: 'a, Y>(
    chart: &mut Chart<'a, 'b, Y>,
    text: bool,
    y_description: &str,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(238, 238, 238));
    if text {
        mesh.x_desc("seconds since the run's first call")
            .y_desc(y_description);
    } else {
        // Every label is text, and there is no font to draw it with.
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    Ok(())
}

fn legend<'a, 'b: 'a, Y>(chart: &mut Chart<'a, 'b, Y>, text: bool) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(region: u32, invoked_ms: u128, completed_ms: u128, outcome: Outcome) -> Call {
        Call {
            id: format!("{region}-{invoked_ms}"),
            region,
            invoked_ns: 5_000_000_000 + invoked_ms * 1_000_000,
            completed_ns: 5_000_000_000 + completed_ms * 1_000_000,
            outcome,
        }
    }

    fn ok() -> Outcome {
        Outcome::Ok {
            decided_by: 0,
            index: 1,
            new: true,
        }
    }

    fn unknown() -> Outcome {
        Outcome::Unknown {
            reason: "timed out".into(),
        }
    }

    /// Region 0: two acknowledged in the first second (10 and 30 ms), one
    /// refused, one unknown in the third. Region 1: one not sent in the
    /// first, one acknowledged (200 ms) in the second.
    fn tiny() -> Vec<Call> {
        vec![
            call(0, 0, 10, ok()),
            call(0, 100, 130, ok()),
            call(0, 200, 250, Outcome::Refused { code: "NO".into() }),
            call(0, 1_500, 2_400, unknown()),
            call(1, 50, 60, Outcome::NotSent { code: "NO".into() }),
            call(1, 900, 1_100, ok()),
        ]
    }

    #[test]
    fn a_tiny_history_gives_known_bins() {
        let calls = tiny();
        let origin = origin_ns(&calls).expect("an origin");
        assert_eq!(origin, 5_000_000_000);
        let regions = bins(&calls, origin, BIN_NS);
        assert_eq!(
            regions[&0],
            RegionBins {
                acknowledged: vec![2, 0, 0],
                failed: vec![0, 0, 1],
                latency_ms: vec![Some([10.0, 30.0]), None, None],
            }
        );
        assert_eq!(
            regions[&1],
            RegionBins {
                acknowledged: vec![0, 1, 0],
                failed: vec![1, 0, 0],
                latency_ms: vec![None, Some([200.0, 200.0]), None],
            }
        );
    }

    #[test]
    fn a_call_at_a_wrong_clock_stays_within_the_bound() {
        let mut calls = tiny();
        calls.push(call(2, 0, 10_000_000_000_000, ok()));
        let regions = bins(&calls, 5_000_000_000, BIN_NS);
        assert_eq!(regions[&2].acknowledged.len(), BINS_MAX);
        assert_eq!(regions[&2].acknowledged[BINS_MAX - 1], 1);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted = [1, 2, 3, 4, 10];
        assert_eq!(percentile(&sorted, 0.5), Some(3));
        assert_eq!(percentile(&sorted, 0.8), Some(4));
        assert_eq!(percentile(&sorted, 1.0), Some(10));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn bands_are_seconds_since_the_first_call() {
        let fault = |from_ns, to_ns| Fault {
            nemesis: "cut-region".into(),
            what: "region 1 cut off".into(),
            from_ns,
            to_ns,
        };
        let bands = bands(
            &[fault(7_500_000_000, 9_000_000_000), fault(1, 6_000_000_000)],
            5_000_000_000,
        );
        let seconds: Vec<(f64, f64)> = bands.iter().map(|band| (band.from_s, band.to_s)).collect();
        assert_eq!(seconds, vec![(2.5, 4.0), (0.0, 1.0)]);
        assert_eq!(bands[0].name, "cut-region");
        assert_eq!(bands[0].what, "region 1 cut off");
    }

    #[test]
    fn a_second_without_a_value_breaks_the_line() {
        let values = [Some(1.0), Some(2.0), None, None, Some(3.0)];
        assert_eq!(
            segments(&values),
            vec![vec![(0.5, 1.0), (1.5, 2.0)], vec![(4.5, 3.0)]]
        );
        assert!(segments(&[None, None]).is_empty());
    }

    /// Without a font nothing may need one: drawn into memory with no text,
    /// the fault's shade and every region's colour are there.
    #[test]
    fn drawn_without_text_shows_the_faults_and_the_regions() {
        let faults = [Fault {
            nemesis: "split".into(),
            what: "regions 0 | 1 2".into(),
            from_ns: 5_500_000_000,
            to_ns: 6_500_000_000,
        }];
        let picture = Picture::of(&tiny(), &faults).expect("a picture");
        assert_eq!(picture.end_s, 3.0);
        assert_eq!(picture.most_per_second(), 2);
        assert_eq!(picture.longest_ms(), 200.0);
        let (width, height) = (400, 300);
        let mut buffer = vec![0u8; (width * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
            draw(&root, &picture, false).expect("drawn");
            root.present().expect("presented");
        }
        let has = |colour: RGBColor| {
            buffer
                .chunks(3)
                .any(|pixel| pixel == [colour.0, colour.1, colour.2])
        };
        assert!(has(SHADE), "the fault is shaded");
        assert!(
            has(REGION_COLOURS[0]) && has(REGION_COLOURS[1]),
            "both regions drawn"
        );
    }

    fn history_line(op: &str, region: u32, time_ns: u128, event: crate::history::Event) -> String {
        let entry = crate::history::Entry {
            op: op.into(),
            time_ns,
            region,
            event,
        };
        serde_json::to_string(&entry).expect("serialised") + "\n"
    }

    /// A results folder as `jepsen run` leaves it, with the faults written
    /// by the scenario's own type: `write` makes a PNG of the plot's size.
    #[test]
    fn write_makes_a_png_of_the_plots_size() {
        use crate::history::{Event, Transfer};
        let dir = tempfile::tempdir().expect("dir");
        let mut history = String::new();
        for (n, region) in [0u32, 1, 2, 0, 1, 2].into_iter().enumerate() {
            let op = format!("op-{n}");
            let sent = 1_000_000_000 * n as u128;
            let transfer = Transfer::moving(format!("t{n}"), "a".into(), "b".into(), "1.00".into());
            history += &history_line(&op, region, sent, Event::Invoke(transfer));
            let outcome = if n == 4 { unknown() } else { ok() };
            history += &history_line(&op, region, sent + 40_000_000, Event::Complete(outcome));
        }
        std::fs::write(dir.path().join("history.jsonl"), history).expect("written");
        let fault = crate::scenario::FaultPeriod {
            nemesis: "cut-region",
            what: "region 1 cut off".into(),
            from_s: 1.0,
            to_s: 3.0,
            cut_off: Some(1),
            from_ns: 1_500_000_000,
            to_ns: 3_500_000_000,
            kept: None,
        };
        let faults = serde_json::to_string(&fault).expect("serialised") + "\n";
        std::fs::write(dir.path().join("faults.jsonl"), faults).expect("written");

        let path = write(dir.path()).expect("plotted");
        assert_eq!(path, dir.path().join(FILE));
        let png = std::fs::read(&path).expect("read");
        assert_eq!(
            png[..8],
            [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']
        );
        assert_eq!(&png[12..16], b"IHDR");
        let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
        assert_eq!((word(16), word(20)), (WIDTH, HEIGHT));
    }

    #[test]
    fn a_folder_without_calls_or_with_a_broken_fault_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("history.jsonl"), "").expect("written");
        std::fs::write(dir.path().join("faults.jsonl"), "").expect("written");
        assert!(write(dir.path()).is_err(), "no call: nothing to plot");
        std::fs::write(dir.path().join("faults.jsonl"), "{\"nemesis\": 3}\n").expect("written");
        let error = read_faults(&dir.path().join("faults.jsonl")).expect_err("broken");
        assert!(format!("{error:#}").contains("line 1"), "{error:#}");
    }
}
