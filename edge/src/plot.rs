//! PNG charts of the reports, drawn with plotters' bitmap backend. Text is rendered with
//! ab_glyph from a TrueType font found on this machine at run time (no fontconfig); without
//! one there are no charts, and the caller says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::reports::compare::CompareReport;
use crate::reports::scale::{ScaleReport, ScaleResult, ScaleTransport};
use crate::reports::sim::{BenchReport, SizeFigures};

/// Where TrueType fonts usually are; the first `.ttf` found under them is used if none of the
/// preferred files exists.
const FONT_FILES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];
const FONT_DIRS: [&str; 2] = ["/usr/share/fonts", "/usr/local/share/fonts"];

fn find_ttf(dir: &Path, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            subdirs.push(path);
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ttf"))
        {
            return Some(path);
        }
    }
    if depth == 0 {
        return None;
    }
    subdirs.into_iter().find_map(|d| find_ttf(&d, depth - 1))
}

/// Registers a font as "sans-serif" once.
fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = FONT_FILES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| FONT_DIRS.iter().find_map(|d| find_ttf(Path::new(d), 4)))
            .ok_or(
                "no TrueType font found under /usr/share/fonts (apt-get install fonts-dejavu-core)",
            )?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
            .map_err(|_| format!("{}: not a usable font", path.display()))
    })
    .clone()
}

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

const BOCLUSTER: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const SERF: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const OTHER: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const FOURTH: RGBColor = RGBColor(0x94, 0x67, 0xbd);

/// Draws the lines, their points and the legend on a chart whose x axis is linear or log.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let color = s.color;
        let style = color.stroke_width(2);
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 5, style))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (8, 0)], style)
                        + PathElement::new(vec![(13, 0), (22, 0)], style)
                });
        } else {
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        }
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)
}

/// Which axes are logarithmic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axes {
    Linear,
    /// N on a log scale (sizes 10, 100, 1000).
    LogX,
    /// Values on a log scale (when the systems differ by orders of magnitude).
    LogY,
}

/// Draws `series` against N on `area`.
fn chart(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    y_label: &str,
    series: &[Series],
    axes: Axes,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max) = (f64::INFINITY, 0.0f64);
    let (mut y_min, mut y_max) = (f64::INFINITY, 0.0f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
        if y > 0.0 {
            y_min = y_min.min(y);
        }
    }
    if !x_min.is_finite() {
        return Err(format!("{title}: nothing to plot"));
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    // Headroom for the legend in the upper left corner.
    let y_top = if y_max > 0.0 { y_max * 1.6 } else { 1.0 };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72);
    let x_desc = "N (nodes)";
    let pad = (x_max - x_min) * 0.05;
    let x_linear = (x_min - pad)..(x_max + pad);
    match axes {
        Axes::LogX => {
            let mut c = builder
                .build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), 0.0..y_top)
                .map_err(err)?;
            c.configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_label)
                .x_labels(6)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| short(*y))
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            draw_lines(&mut c, series)
        }
        Axes::LogY => {
            let bottom = if y_min.is_finite() { y_min / 3.0 } else { 0.1 };
            let top = (y_max.max(bottom) * 30.0).max(bottom * 10.0);
            let mut c = builder
                .build_cartesian_2d(x_linear, (bottom..top).log_scale())
                .map_err(err)?;
            c.configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_label)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| short(*y))
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            draw_lines(&mut c, series)
        }
        Axes::Linear => {
            let mut c = builder
                .build_cartesian_2d(x_linear, 0.0..y_top)
                .map_err(err)?;
            c.configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_label)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| short(*y))
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            draw_lines(&mut c, series)
        }
    }
}

/// An axis label without needless decimals.
fn short(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<(), String> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    draw(&root)?;
    root.present()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Points (N, median) of a figure for one system.
fn compare_points(report: &CompareReport, key: &str, serf: bool, scale: f64) -> Vec<(f64, f64)> {
    report
        .sizes
        .iter()
        .filter_map(|size| {
            let f = size.figures.iter().find(|f| f.key == key)?;
            let stat = if serf { f.serf } else { f.bocluster }?;
            Some((size.n as f64, stat.median * scale))
        })
        .collect()
}

/// One chart of `plot_compare`: two figures (keys and what they show), each drawn for
/// bocluster and for Serf.
struct ChartSpec {
    file: &'static str,
    title: &'static str,
    y: &'static str,
    solid: (&'static str, &'static str),
    dashed: (&'static str, &'static str),
    scale: f64,
    axes: Axes,
}

/// convergence.png, detection.png, bandwidth.png and resources.png in `dir`.
pub fn plot_compare(report: &CompareReport, dir: &Path) -> Result<Vec<PathBuf>, String> {
    ensure_font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Each chart: bocluster and Serf, one figure solid and one dashed.
    let charts: [ChartSpec; 4] = [
        ChartSpec {
            file: "convergence.png",
            title: "Convergence of a change, and cold start",
            y: "seconds",
            solid: ("change_ms", "change seen by all"),
            dashed: ("cold_start_ms", "cold start (all see all)"),
            scale: 0.001,
            axes: Axes::Linear,
        },
        ChartSpec {
            file: "detection.png",
            title: "SIGKILL to dead",
            y: "seconds",
            solid: ("detect_first_ms", "dead on node 0"),
            dashed: ("detect_all_ms", "dead on all nodes"),
            scale: 0.001,
            axes: Axes::Linear,
        },
        ChartSpec {
            file: "bandwidth.png",
            title: "Gossip bandwidth per node, steady (log scale)",
            y: "kB/s",
            solid: ("bytes_out_per_s", "out"),
            dashed: ("bytes_in_per_s", "in"),
            scale: 0.001,
            axes: Axes::LogY,
        },
        ChartSpec {
            file: "resources.png",
            title: "Memory per node: resident (RSS) and private (dashed)",
            y: "MiB",
            solid: ("rss_kib", "RSS"),
            dashed: ("private_kib", "private"),
            scale: 1.0 / 1024.0,
            axes: Axes::Linear,
        },
    ];
    let mut files = Vec::new();
    let charts = charts.map(|c| {
        let series = [(c.solid, false), (c.dashed, true)]
            .into_iter()
            .flat_map(|((key, what), dashed)| {
                [("bocluster", BOCLUSTER, false), ("Serf", SERF, true)].map(
                    |(system, color, serf)| Series {
                        label: format!("{system} {what}"),
                        color,
                        dashed,
                        points: compare_points(report, key, serf, c.scale),
                    },
                )
            })
            .collect::<Vec<Series>>();
        (c.file, c.title, c.y, series, c.axes)
    });
    for (file, title, y, series, axes) in charts {
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let path = dir.join(file);
        png(&path, (900, 560), |area| {
            chart(area, title, y, &series, axes)
        })?;
        files.push(path);
    }
    Ok(files)
}

/// scale.png in `dir`: four panels against N (log scale).
pub fn plot_scale(report: &ScaleReport, dir: &Path) -> Result<Vec<PathBuf>, String> {
    ensure_font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let points = |f: &dyn Fn(&ScaleResult) -> Option<f64>| -> Vec<(f64, f64)> {
        report
            .sizes
            .iter()
            .filter_map(|r| Some((r.n as f64, f(r)?)))
            .collect()
    };
    let one = |label: &str, color: RGBColor, pts: Vec<(f64, f64)>| Series {
        label: label.into(),
        color,
        dashed: false,
        points: pts,
    };
    let missed: Vec<String> = report
        .sizes
        .iter()
        .filter(|r| r.converge_ms.is_none())
        .map(|r| r.n.to_string())
        .collect();
    let title = if missed.is_empty() {
        "Convergence after the last start".to_string()
    } else {
        format!("Convergence (N = {} did not converge)", missed.join(", "))
    };
    let path = dir.join("scale.png");
    png(&path, (1200, 900), |root| {
        let panels = root.split_evenly((2, 2));
        chart(
            &panels[0],
            &title,
            "seconds",
            &[
                one(
                    "every node sees N alive",
                    BOCLUSTER,
                    points(&|r| r.converge_ms.map(|v| v / 1000.0)),
                ),
                one(
                    "CREATE DATABASE seen by all",
                    OTHER,
                    points(&|r| r.change_ms.map(|v| v / 1000.0)),
                ),
            ],
            Axes::LogX,
        )?;
        chart(
            &panels[1],
            "Resident memory per node",
            "KiB",
            &[one(
                "process RSS / N (converged sizes)",
                FOURTH,
                points(&|r| r.converge_ms.map(|_| r.rss_per_node_kib)),
            )],
            Axes::LogX,
        )?;
        chart(
            &panels[2],
            "CPU per node (steady; see the interval per N)",
            "% of one core",
            &[one(
                "process CPU / N",
                SERF,
                points(&|r| r.cpu_percent_per_node),
            )],
            Axes::LogX,
        )?;
        chart(
            &panels[3],
            "Gossip sent per node (steady; see the interval per N)",
            "kB/s",
            &[one(
                match report.transport {
                    ScaleTransport::Quic => "UDP bytes / N",
                    ScaleTransport::Memory => "datagram bytes / N",
                },
                BOCLUSTER,
                points(&|r| r.gossip_bytes_per_s_per_node.map(|v| v / 1000.0)),
            )],
            Axes::LogX,
        )
    })?;
    Ok(vec![path])
}

/// sim.png in `dir`: the simulator's figures against N (log scale), from `sim --bench`
/// reports (several are merged: one point per size and seed).
pub fn plot_sim(reports: &[BenchReport], dir: &Path) -> Result<Vec<PathBuf>, String> {
    ensure_font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut sizes: Vec<&SizeFigures> = reports.iter().flat_map(|r| r.sizes.iter()).collect();
    sizes.sort_by_key(|s| s.n);
    let points = |f: &dyn Fn(&SizeFigures) -> Option<f64>| -> Vec<(f64, f64)> {
        sizes
            .iter()
            .filter_map(|s| Some((s.n as f64, f(s)?)))
            .collect()
    };
    let line = |label: &str, color: RGBColor, dashed: bool, pts| Series {
        label: label.into(),
        color,
        dashed,
        points: pts,
    };
    let path = dir.join("sim.png");
    png(&path, (1200, 900), |root| {
        let panels = root.split_evenly((2, 2));
        chart(
            &panels[0],
            "SIGKILL to dead, and leave to left",
            "seconds",
            &[
                line(
                    "first node reports dead",
                    BOCLUSTER,
                    false,
                    points(&|s| s.crash_first_dead_s),
                ),
                line(
                    "every node reports dead",
                    BOCLUSTER,
                    true,
                    points(&|s| s.crash_all_dead_s),
                ),
                line(
                    "every node reports left",
                    OTHER,
                    false,
                    points(&|s| s.leave_all_left_s),
                ),
            ],
            Axes::LogX,
        )?;
        chart(
            &panels[1],
            "Record change to every node (probe periods)",
            "periods",
            &[
                line(
                    "measured",
                    BOCLUSTER,
                    false,
                    points(&|s| s.record_spread_periods),
                ),
                line("2 log2 N", SERF, true, points(&|s| Some(s.two_log2_n))),
            ],
            Axes::LogX,
        )?;
        chart(
            &panels[2],
            "Sent per node (sealed datagrams)",
            "B/s",
            &[
                line(
                    "steady",
                    BOCLUSTER,
                    false,
                    points(&|s| Some(s.steady.bytes_out)),
                ),
                line(
                    "under churn",
                    FOURTH,
                    true,
                    points(&|s| Some(s.churn.bytes_out)),
                ),
            ],
            Axes::LogX,
        )?;
        chart(
            &panels[3],
            "Cold start and partition heal",
            "seconds",
            &[
                line(
                    "90 % see all",
                    BOCLUSTER,
                    false,
                    points(&|s| s.cold_start_90_s),
                ),
                line(
                    "all see all",
                    BOCLUSTER,
                    true,
                    points(&|s| s.cold_start_all_s),
                ),
                line(
                    "heal to agreement",
                    OTHER,
                    false,
                    points(&|s| s.partition_heal_agreed_s),
                ),
            ],
            Axes::LogX,
        )
    })?;
    Ok(vec![path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_chart_when_a_font_is_there() {
        if ensure_font().is_err() {
            eprintln!("NOTICE: no TrueType font; chart test skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        let series = [Series {
            label: "x".into(),
            color: BOCLUSTER,
            dashed: true,
            points: vec![(10.0, 1.0), (50.0, 2.0)],
        }];
        for axes in [Axes::Linear, Axes::LogX, Axes::LogY] {
            png(&path, (300, 200), |a| chart(a, "t", "s", &series, axes)).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let empty = [Series {
            label: "x".into(),
            color: BOCLUSTER,
            dashed: false,
            points: vec![],
        }];
        assert!(png(&path, (300, 200), |a| chart(
            a,
            "t",
            "s",
            &empty,
            Axes::Linear
        ))
        .is_err());
    }
}
