//! The main job's PNG plots (`RUN_DIR/plots/`), drawn with plotters on its bitmap backend. Text uses the
//! Ubuntu Light font embedded by `epaint_default_fonts` (registered with plotters' `ab_glyph` backend), so
//! drawing needs no system fonts or fontconfig.

use anyhow::Context;
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::sync::Once;

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// One chart of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption.
    pub title: String,
    /// Axis labels.
    pub x_label: String,
    /// See `x_label`.
    pub y_label: String,
    /// Its lines (empty: the panel says "no data").
    pub series: Vec<Series>,
}

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The font is valid TrueType (a constant of the crate); a failure would only lose the text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws `panels` in a grid of `cols` columns into a PNG at `path` (written atomically).
pub fn figure(path: &Path, panels: &[Panel], cols: usize) -> anyhow::Result<()> {
    register_font();
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let (w, h) = (480 * cols as u32, 340 * rows as u32);
    // Drawn to a temporary PNG beside the target (the backend picks the format from the extension), then
    // renamed over it: a reader never sees half a file.
    let name = path.file_name().and_then(|n| n.to_str()).context("plot path has no file name")?;
    let tmp = path.with_file_name(format!(".tmp-{}-{name}", std::process::id()));
    {
        let root = BitMapBackend::new(&tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        for (area, p) in root.split_evenly((rows, cols)).iter().zip(panels) {
            panel(area, p)?;
        }
        root.present().map_err(draw_err)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}

fn panel(area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, p: &Panel) -> anyhow::Result<()> {
    let pts = p.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .label_style(("sans-serif", 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)?;
    for (i, s) in p.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(draw_err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    if p.series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Moving mean over the last `w` points (the first ones over what there is).
pub fn smooth(points: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    let w = w.max(1);
    (0..points.len())
        .map(|i| {
            let lo = (i + 1).saturating_sub(w);
            let win = &points[lo..=i];
            (points[i].0, win.iter().map(|p| p.1).sum::<f64>() / win.len() as f64)
        })
        .collect()
}

/// `(step, value at pointer)` of every line of a metrics.jsonl that has both (unreadable lines skipped:
/// a plot never fails a finished run).
pub fn metric(lines: &[Value], pointer: &str) -> Vec<(f64, f64)> {
    lines.iter().filter_map(|l| Some((l["step"].as_f64()?, l.pointer(pointer)?.as_f64()?))).collect()
}

/// The lines of a metrics.jsonl (an absent file has none).
pub fn read_metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_is_a_trailing_mean() {
        let pts = [(1.0, 1.0), (2.0, 3.0), (3.0, 5.0), (4.0, 7.0)];
        assert_eq!(smooth(&pts, 2), vec![(1.0, 1.0), (2.0, 2.0), (3.0, 4.0), (4.0, 6.0)]);
        assert_eq!(smooth(&pts, 1), pts.to_vec());
    }

    #[test]
    fn a_figure_is_a_png_of_the_grid_size() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("phi4r-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("f.png");
        let line = |name: &str, k: f64| Series {
            name: name.into(),
            points: (0..50).map(|i| (i as f64, k * i as f64)).collect(),
        };
        let p = |t: &str| Panel {
            title: t.into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![line("a", 1.0), line("b", 2.0)],
        };
        let empty = Panel { series: vec![], ..p("empty") };
        figure(&path, &[p("one"), p("two"), empty], 2)?;
        let png = std::fs::read(&path)?;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
        let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
        assert_eq!((be(16), be(20)), (960, 680), "2 columns x 2 rows of 480 x 340 (IHDR)");
        // Lines in several colors compress far worse than a blank canvas (~3 KB at this size).
        assert!(png.len() > 20_000, "{} bytes: nothing drawn?", png.len());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn metric_reads_step_and_pointer() {
        let lines: Vec<Value> = vec![
            serde_json::json!({"step": 1, "loss": 2.0, "rl": {"kl": 0.1}}),
            serde_json::json!({"step": 2, "rl": {"kl": 0.2}}),
        ];
        assert_eq!(metric(&lines, "/loss"), vec![(1.0, 2.0)]);
        assert_eq!(metric(&lines, "/rl/kl"), vec![(1.0, 0.1), (2.0, 0.2)]);
    }
}
