//! The plots: drain rate, end-to-end latency percentiles and RSS over a run, one panel
//! each, from the per-second samples (`series.rs`), as SVG (`plotters`, SVG backend only,
//! so nothing is installed and the files diff and render anywhere, GitHub included).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::series::Sample;

/// One line of every panel: a run, or one round of one program.
pub struct Line<'a> {
    /// The legend's name; lines with the same name share it (`--floor`'s rounds).
    pub label: &'a str,
    pub color: RGBColor,
    pub samples: &'a [Sample],
}

pub const FLOOR: RGBColor = RGBColor(31, 119, 180);
pub const PIPELINE: RGBColor = RGBColor(214, 39, 40);

/// The x axis: seconds, or minutes for a long run.
#[derive(Debug, Clone, Copy)]
pub enum Axis {
    Seconds,
    Minutes,
}

impl Axis {
    fn of(self, t: f64) -> f64 {
        match self {
            Axis::Seconds => t,
            Axis::Minutes => t / 60.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Axis::Seconds => "seconds since the start",
            Axis::Minutes => "minutes since the start",
        }
    }
}

type Panel<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// A curve's points, (x, y).
type Curve = Vec<(f64, f64)>;
/// Curves of one kind (one per line), what they are and their stroke width.
type Set<'s> = (Vec<Curve>, &'s str, u32);
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Writes the three panels to `path`.
pub fn write(path: &str, title: &str, axis: Axis, lines: &[Line]) -> Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (1000, 960)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 26))?;
    // One legend for the figure, in a strip of its own: inside the panels it hid lines.
    let (strip, body) = root.split_vertically(34);
    legend(&strip, lines)?;
    let panels = body.split_evenly((3, 1));
    let x_max = lines
        .iter()
        .flat_map(|l| l.samples.iter().map(|s| axis.of(s.t)))
        .fold(1e-9, f64::max);
    // The per-second rate jumps with the watch's batches; a 5-second mean shows the trend.
    let rates: Vec<Vec<(f64, f64)>> = lines.iter().map(|l| smooth(l.samples, 5, axis)).collect();
    let curves = |pick: &dyn Fn(&Line, usize) -> Curve| {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| pick(l, i))
            .collect::<Vec<_>>()
    };
    panel(
        &panels[0],
        "drain rate (/state writes per second, 5 s mean)",
        "msg/s",
        x_max,
        axis,
        &[(curves(&|_, i| rates[i].clone()), "", 2)],
        lines,
    )?;
    let latency =
        |pick: fn(&Sample) -> f64| move |l: &Line, _| points(l.samples, axis, |s| pick(s) / 1000.0);
    panel(
        &panels[1],
        "end-to-end latency, publish to /state, of each second's writes (p50 thick, p99 thin)",
        "seconds",
        x_max,
        axis,
        &[
            (curves(&latency(|s| s.p50)), " p50", 2),
            (curves(&latency(|s| s.p99)), " p99", 1),
        ],
        lines,
    )?;
    panel(
        &panels[2],
        "resident set size (VmRSS) of the process under test",
        "MiB",
        x_max,
        axis,
        &[(curves(&|l, _| points(l.samples, axis, |s| s.rss)), "", 2)],
        lines,
    )?;
    root.present()?;
    Ok(())
}

/// One panel: `sets` of curves (one per line each), drawn `width` wide.
fn panel(
    area: &Panel,
    caption: &str,
    unit: &str,
    x_max: f64,
    axis: Axis,
    sets: &[Set],
    lines: &[Line],
) -> Result<()> {
    let y_max = sets
        .iter()
        .flat_map(|(curves, _, _)| curves.iter().flatten().map(|p| p.1))
        .fold(1e-9, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(axis.name())
        .y_desc(unit)
        .label_style(("sans-serif", 16))
        .y_label_formatter(&|v| match y_max {
            m if m < 10.0 => format!("{v:.1}"),
            _ => format!("{v:.0}"),
        })
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (curves, _, width) in sets {
        for (line, curve) in lines.iter().zip(curves) {
            let color = if *width > 1 {
                line.color
            } else {
                mix(line.color)
            };
            let style = ShapeStyle::from(&color).stroke_width(*width);
            chart.draw_series(LineSeries::new(curve.iter().copied(), style))?;
        }
    }
    Ok(())
}

/// Each label once, in its colour, then what the widths mean.
fn legend(strip: &Panel, lines: &[Line]) -> Result<()> {
    let font = ("sans-serif", 16).into_font();
    let mut x = 80;
    let mut seen: Vec<&str> = Vec::new();
    for line in lines {
        if seen.contains(&line.label) {
            continue;
        }
        seen.push(line.label);
        let style = ShapeStyle::from(&line.color).stroke_width(3);
        strip.draw(&PathElement::new(vec![(x, 17), (x + 30, 17)], style))?;
        strip.draw(&Text::new(
            line.label.to_string(),
            (x + 38, 9),
            font.clone(),
        ))?;
        x += 60 + 9 * line.label.len() as i32;
    }
    let note = "latency: p50 thick, p99 thin and lighter";
    strip.draw(&Text::new(note, (x + 20, 9), font.color(&BLACK.mix(0.6))))?;
    Ok(())
}

/// A lighter shade of `color`, for the p99 lines.
fn mix(color: RGBColor) -> RGBColor {
    let half = |c: u8| ((u16::from(c) + 255) / 2) as u8;
    RGBColor(half(color.0), half(color.1), half(color.2))
}

/// `(x, value)` of the samples whose value is known.
fn points(samples: &[Sample], axis: Axis, value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .map(|s| (axis.of(s.t), value(s)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// The rate averaged over `width` samples centred on each: done over time, so uneven
/// sample intervals weigh right.
fn smooth(samples: &[Sample], width: usize, axis: Axis) -> Vec<(f64, f64)> {
    let half = width / 2;
    (0..samples.len())
        .filter_map(|i| {
            let (a, b) = (
                &samples[i.saturating_sub(half)],
                &samples[(i + half).min(samples.len() - 1)],
            );
            (b.t > a.t).then(|| {
                (
                    axis.of(samples[i].t),
                    (b.done - a.done) as f64 / (b.t - a.t),
                )
            })
        })
        .collect()
}
