//! The results as an SVG chart (`--plot FILE.svg`): grouped bars, kernel beside kxdp (and DPDK
//! testpmd where it was measured), one group per scenario (or per worker count, for `scaling`), Mpps delivered, each bar labelled with
//! its value. Drawn with plotters' SVG backend: no font files, text is left to the viewer.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Report, create_parent};

/// The paths, in bar order, with their colours.
const PATHS: [(&str, RGBColor); 3] = [
    ("kernel", RGBColor(120, 120, 120)),
    ("kxdp", RGBColor(31, 119, 180)),
    ("dpdk-testpmd", RGBColor(255, 127, 14)),
];

/// One group of bars: its label and each path's Mpps (NaN or missing: no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub mpps: [Option<f64>; 3],
}

/// The groups of a report: one per scenario (labelled with the worker count when above 1).
pub fn groups(report: &Report) -> Vec<Group> {
    report
        .scenarios
        .iter()
        .map(|s| {
            let label = if s.setup.workers > 1 {
                format!("{} x{}", s.scenario, s.setup.workers)
            } else {
                s.scenario.clone()
            };
            let mut mpps = [None; 3];
            for (slot, (name, _)) in mpps.iter_mut().zip(PATHS) {
                *slot = s
                    .paths
                    .iter()
                    .find(|p| p.path == name && p.unavailable.is_none())
                    .map(|p| p.mpps)
                    .filter(|m| m.is_finite());
            }
            Group { label, mpps }
        })
        .collect()
}

/// Writes the chart of `report` to `path`.
pub fn write_svg(report: &Report, path: &Path) -> Result<()> {
    create_parent(path)?;
    let groups = groups(report);
    let caption = format!(
        "kxdp vs kernel, {} B frames — {} ({} cores), kernel {}",
        report.scenarios.first().map_or(64, |s| s.setup.wire_bytes),
        report.machine.cpu_model,
        report.machine.nproc,
        report.machine.kernel
    );
    draw(&groups, &caption, path).map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

fn draw(groups: &[Group], caption: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let width = (160 * groups.len().max(1) as u32 + 200).max(640);
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = groups
        .iter()
        .flat_map(|g| g.mpps.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let y_max = if top > 0.0 { top * 1.2 } else { 1.0 };
    let n = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("Mpps delivered")
        .draw()?;
    // A slot per path measured anywhere: without DPDK, two bars as wide as before.
    let shown: Vec<usize> = (0..PATHS.len())
        .filter(|&k| groups.iter().any(|g| g.mpps[k].is_some()))
        .collect();
    let slot = 0.8 / shown.len().max(1) as f64;
    for (pos, &k) in shown.iter().enumerate() {
        let (name, colour) = PATHS[k];
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.mpps[k].map(|m| (i as f64, m)))
            .collect();
        let x0 = 0.1 + slot * pos as f64;
        let width = slot - 0.02;
        chart
            .draw_series(bars.iter().map(|&(i, m)| {
                Rectangle::new([(i + x0, 0.0), (i + x0 + width, m)], colour.filled())
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        chart.draw_series(bars.iter().map(|&(i, m)| {
            Text::new(
                format!("{m:.2}"),
                (i + x0 + width / 2.0, m),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    // Group labels under the axis, centred on each group.
    for (i, g) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            g.label.clone(),
            (x, y + 8),
            ("sans-serif", 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn groups_and_svg() {
        let mut r = crate::report::tests::sample_report();
        let g = groups(&r);
        assert_eq!(
            g,
            [Group {
                label: "nat".into(),
                mpps: [Some(0.8), Some(0.9), None]
            }]
        );
        r.scenarios[0].paths[0].unavailable = Some("nft not installed".into());
        assert_eq!(groups(&r)[0].mpps, [None, Some(0.9), None]);

        let dir = std::env::temp_dir().join(format!("kxdp-bench-plot-{}", std::process::id()));
        let file = dir.join("out.svg");
        write_svg(&crate::report::tests::sample_report(), &file).unwrap();
        let svg = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for text in ["kernel", "kxdp", "nat", "0.80", "0.90", "Mpps delivered"] {
            assert!(svg.contains(text), "no {text} in the SVG");
        }
        // Two bars.
        assert!(
            svg.matches("fill=\"#1F77B4\"").count() >= 2,
            "kxdp bar and legend"
        );
        // A third path where DPDK testpmd was measured.
        let mut r = crate::report::tests::sample_report();
        let mut dpdk = r.scenarios[0].paths[1].clone();
        dpdk.path = "dpdk-testpmd".into();
        dpdk.mpps = 0.5;
        r.scenarios[0].paths.push(dpdk);
        assert_eq!(groups(&r)[0].mpps, [Some(0.8), Some(0.9), Some(0.5)]);
        let file = dir.join("dpdk.svg");
        write_svg(&r, &file).unwrap();
        let svg = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.contains("dpdk-testpmd") && svg.contains("0.50"));
        assert!(
            svg.matches("fill=\"#FF7F0E\"").count() >= 2,
            "testpmd bar and legend"
        );
    }
}
