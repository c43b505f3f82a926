//! The two plots: `hook_overhead.svg` and `append_latency.svg`.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use bench_schema::exec::{self, Exec};
use bench_schema::spool::{self, Spool};

use crate::figures::{LatPoint, latency_points};
use crate::format::{num as fmt_num, utc};
use crate::sources::Loaded;
const PLOT_FONT: &str = "sans-serif";

/// An SVG saying why there is no plot.
fn placeholder_svg(title: &str, why: &str) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 200)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let _ = root.draw(&Text::new(title.to_owned(), (20, 40), (PLOT_FONT, 22)));
        let _ = root.draw(&Text::new(why.to_owned(), (20, 90), (PLOT_FONT, 16)));
        let _ = root.present();
    }
    svg
}

struct Bar {
    label: String,
    value: f64,
    target: f64,
}

pub fn hook_overhead_svg(exec: &Loaded<Exec>) -> String {
    let title = "tracespool exec -- true: overhead over `true` per backend state";
    let Some(j) = &exec.file else {
        return placeholder_svg(title, "not measured: no exec.json");
    };
    let bars: Vec<Bar> = exec::OVERHEAD
        .iter()
        .filter_map(|(key, target, label)| {
            Some(Bar {
                label: (*label).to_owned(),
                value: j.cases.get(*key)?.overhead_ms?,
                target: target.aim,
            })
        })
        .collect();
    if bars.is_empty() {
        return placeholder_svg(title, "not measured: no backend-state cases in exec.json");
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        if let Err(e) = draw_hook_overhead(&root, title, &bars, exec) {
            drop(root);
            return placeholder_svg(title, &format!("plotting failed: {e}"));
        }
    }
    svg
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// The plot's area: `root` down to `height`, with `note` in grey under it.
fn above_note<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    height: u32,
    note: String,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>, Box<dyn std::error::Error>> {
    let (upper, lower) = root.split_vertically(height);
    lower.draw(&Text::new(
        note,
        (60, 12),
        (PLOT_FONT, 13).into_font().color(&BLACK.mix(0.7)),
    ))?;
    Ok(upper)
}

fn draw_hook_overhead(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    bars: &[Bar],
    exec: &Loaded<Exec>,
) -> PlotResult {
    root.fill(&WHITE)?;
    let n = bars.len();
    let top = bars
        .iter()
        .map(|b| b.value.max(b.target))
        .fold(0.0f64, f64::max)
        * 1.22;
    let subtitle = format!(
        "median wall time − median(true), ms; {}",
        exec.meta.modified.map_or("?".into(), utc)
    );
    let upper = above_note(root, 500, subtitle)?;
    let mut chart = ChartBuilder::on(&upper)
        .caption(title, (PLOT_FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1.0))?;
    let labels: Vec<String> = bars
        .iter()
        .map(|b| format!("{} (≤ {} ms)", b.label, fmt_num(b.target)))
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("overhead (ms)")
        .x_labels(n + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style((PLOT_FONT, 14))
        .axis_desc_style((PLOT_FONT, 14))
        .draw()?;
    let met_color = RGBColor(46, 139, 87);
    let missed_color = RGBColor(214, 96, 39);
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let color = if b.value <= b.target {
            met_color
        } else {
            missed_color
        };
        let mut r = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), b.value),
            ],
            color.filled(),
        );
        r.set_margin(0, 0, 22, 22);
        r
    }))?;
    // Legend entries only (no data).
    for (label, color) in [
        ("median overhead, target MET", met_color),
        ("median overhead, target MISSED", missed_color),
    ] {
        chart
            .draw_series(std::iter::empty::<Rectangle<(SegmentValue<usize>, f64)>>())?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    let target_style = RED.stroke_width(3);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            PathElement::new(
                vec![
                    (SegmentValue::Exact(i), b.target),
                    (SegmentValue::Exact(i + 1), b.target),
                ],
                target_style,
            )
        }))?
        .label("target (under each state's name)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], target_style));
    let value_style =
        TextStyle::from((PLOT_FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format!("{} ms", fmt_num(b.value)),
            (SegmentValue::CenterOf(i), b.value + top * 0.01),
            value_style.clone(),
        )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((PLOT_FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

pub fn append_latency_svg(spool: &Loaded<Spool>) -> String {
    let title = "1 KiB append latency (sync Never) against spool size";
    let Some(j) = &spool.file else {
        return placeholder_svg(title, "not measured: no spool.json");
    };
    let points = latency_points(j);
    if points.is_empty() {
        return placeholder_svg(title, "not measured: no latency in spool.json");
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 560)).into_drawing_area();
        let by_size = j
            .latency_1k_never
            .as_ref()
            .is_some_and(|l| l.by_spool_size.is_some());
        if let Err(e) = draw_append_latency(&root, title, &points, by_size, spool) {
            drop(root);
            return placeholder_svg(title, &format!("plotting failed: {e}"));
        }
    }
    svg
}

/// A labelled line of the latency plot: (legend, colour, (MiB, µs) points).
type Curve = (&'static str, RGBColor, Vec<(f64, f64)>);

fn draw_append_latency(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    points: &[LatPoint],
    by_size: bool,
    spool: &Loaded<Spool>,
) -> PlotResult {
    root.fill(&WHITE)?;
    let x_max = points.iter().map(|p| p.spool_mib).fold(0.0f64, f64::max);
    let x_top = (x_max * 1.05).max(1.0);
    let last = points.last().expect("points");
    // The target: median at 1 GiB ≤ aim × the empty spool's median (same rounds).
    let aim = spool::LATENCY_RATIO.aim;
    let target = last.empty_p50_us.map(|e| e * aim);
    let y_top = points
        .iter()
        .flat_map(|p| [Some(p.p99_us), p.empty_p99_us, target])
        .flatten()
        .fold(0.0f64, f64::max)
        * 1.15;
    let note = format!(
        "{}; {}",
        if by_size {
            "each point: the growing spool and a fresh empty one, timed in the same interleaved rounds"
        } else {
            "older spool.json: only the empty and the full spool were measured"
        },
        spool.meta.modified.map_or("?".into(), utc)
    );
    let upper = above_note(root, 520, note)?;
    let mut chart = ChartBuilder::on(&upper)
        .caption(title, (PLOT_FONT, 20))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-x_top * 0.03..x_top, 0.0..y_top.max(1.0))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("spool size (MiB on disk)")
        .y_desc("latency (µs)")
        .label_style((PLOT_FONT, 14))
        .axis_desc_style((PLOT_FONT, 14))
        .draw()?;

    let p50_color = RGBColor(31, 119, 180);
    let p99_color = RGBColor(214, 96, 39);
    let series: [Curve; 2] = [
        (
            "p50, growing spool",
            p50_color,
            points.iter().map(|p| (p.spool_mib, p.p50_us)).collect(),
        ),
        (
            "p99, growing spool",
            p99_color,
            points.iter().map(|p| (p.spool_mib, p.p99_us)).collect(),
        ),
    ];
    for (label, color, data) in series {
        let style = color.stroke_width(3);
        chart
            .draw_series(LineSeries::new(data.clone(), style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        chart.draw_series(
            data.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
        )?;
        let label_style = TextStyle::from((PLOT_FONT, 12).into_font())
            .color(&color)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(data.iter().map(|&(x, y)| {
                Text::new(fmt_num(y), (x, y + y_top * 0.012), label_style.clone())
            }))?;
    }
    let empties: [Curve; 2] = [
        (
            "p50, fresh empty spool (reference)",
            p50_color,
            points
                .iter()
                .filter_map(|p| Some((p.spool_mib, p.empty_p50_us?)))
                .collect(),
        ),
        (
            "p99, fresh empty spool (reference)",
            p99_color,
            points
                .iter()
                .filter_map(|p| Some((p.spool_mib, p.empty_p99_us?)))
                .collect(),
        ),
    ];
    for (label, color, data) in empties {
        if data.is_empty() {
            continue;
        }
        let style = color.mix(0.55).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(data, 8, 5, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    if let Some(t) = target {
        let style = RED.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, t), (x_top, t)],
                3,
                4,
                style,
            ))?
            .label(format!(
                "target: p50 at {} MiB ≤ {aim} × empty p50 = {} µs",
                fmt_num(last.spool_mib),
                fmt_num(t)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((PLOT_FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}
