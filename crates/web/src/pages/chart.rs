//! The stats section's chart: direct and total adds per period as bars of an SVG drawn on
//! the server and placed in the page (attributes only, its colours from the stylesheet's
//! classes, no script), with the same numbers as a table for screen readers and for
//! anyone who wants the figures.

use crate::usage::{Adds, PeriodAdds, UsagePeriod, UsageRange};

/// The drawing's size in SVG units; the stylesheet scales it to the page's width.
const WIDTH: u32 = 720;
const HEIGHT: u32 = 240;
/// Room for the value axis's labels on the left, and the date labels below.
const LEFT: u32 = 48;
const RIGHT: u32 = 8;
const TOP: u32 = 12;
const BOTTOM: u32 = 28;
/// Gridlines above the baseline.
const STEPS: u64 = 4;

/// A chart ready to draw, and its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The drawing's width and height.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Where the plot's baseline is, and its left and right ends.
    pub baseline: u32,
    /// See `baseline`.
    pub left: u32,
    /// See `baseline`.
    pub right: u32,
    /// One per period, oldest first.
    pub bars: Vec<Bar>,
    /// The value axis's lines and labels, from the baseline up.
    pub gridlines: Vec<Gridline>,
    /// The first and last period's labels under the axis.
    pub first_label: String,
    /// See `first_label`.
    pub last_label: String,
    /// What the chart shows, in words (its accessible description).
    pub summary: String,
    /// The range's sums.
    pub adds: Adds,
}

/// One period's bars: total adds, and direct adds drawn over them (never taller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// Its left edge and width.
    pub x: u32,
    /// See `x`.
    pub width: u32,
    /// The total bar's top and height.
    pub total_y: u32,
    /// See `total_y`.
    pub total_height: u32,
    /// The direct bar's top and height.
    pub direct_y: u32,
    /// See `direct_y`.
    pub direct_height: u32,
    /// The period, as the table names it.
    pub label: String,
    /// Its adds.
    pub adds: Adds,
}

/// A horizontal line of the value axis with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gridline {
    /// Its height in the drawing.
    pub y: u32,
    /// Where its label's baseline is.
    pub label_y: u32,
    /// The value it marks.
    pub value: u64,
}

/// The chart of `periods` over `range`, each period's adds as `adds_of` reads them (all
/// versions, or one). Over the whole of the source's days ([`UsageRange::All`]) the
/// periods before the first with adds are left out, so a young server's chart does not
/// start years back.
pub fn chart(
    periods: &[PeriodAdds],
    range: UsageRange,
    adds_of: impl Fn(&PeriodAdds) -> Adds,
) -> Chart {
    let mut points: Vec<(String, Adds)> = periods
        .iter()
        .map(|period| (label(period, range.period()), adds_of(period)))
        .collect();
    if range == UsageRange::All {
        let first = points.iter().position(|(_, adds)| adds.total > 0);
        points.drain(..first.unwrap_or(points.len().saturating_sub(1)));
    }
    let highest = points.iter().map(|(_, adds)| adds.total).max().unwrap_or(0);
    let step = nice_step(highest.div_ceil(STEPS));
    let top_value = step.saturating_mul(STEPS);
    let plot_height = HEIGHT - TOP - BOTTOM;
    let baseline = HEIGHT - BOTTOM;
    let plot_width = WIDTH - LEFT - RIGHT;
    let count = u32::try_from(points.len()).unwrap_or(u32::MAX).max(1);
    let slot = plot_width / count;
    let gap = if slot > 8 {
        slot / 5
    } else {
        u32::from(slot > 2)
    };
    let scale = |value: u64| -> u32 {
        let height = u128::from(value) * u128::from(plot_height) / u128::from(top_value);
        u32::try_from(height).unwrap_or(plot_height)
    };
    let mut adds = Adds::default();
    let bars: Vec<Bar> = points
        .into_iter()
        .zip(0u32..)
        .map(|((label, period), index)| {
            adds.direct += period.direct;
            adds.total += period.total;
            let (total_height, direct_height) = (scale(period.total), scale(period.direct));
            Bar {
                x: LEFT + index * slot + gap / 2,
                width: (slot - gap).max(1),
                total_y: baseline - total_height,
                total_height,
                direct_y: baseline - direct_height,
                direct_height,
                label,
                adds: period,
            }
        })
        .collect();
    let gridlines = (0..=STEPS)
        .map(|n| {
            let value = n.saturating_mul(step);
            let y = baseline - scale(value);
            Gridline {
                y,
                label_y: y + 4,
                value,
            }
        })
        .collect();
    let first_label = bars
        .first()
        .map(|bar| bar.label.clone())
        .unwrap_or_default();
    let last_label = bars.last().map(|bar| bar.label.clone()).unwrap_or_default();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        baseline,
        left: LEFT,
        right: WIDTH - RIGHT,
        summary: format!(
            "Adds per {} from {first_label} to {last_label}: {} in total, {} of them direct.",
            match range.period() {
                UsagePeriod::Day => "day",
                UsagePeriod::Week => "week",
                UsagePeriod::Month => "month",
            },
            adds.total,
            adds.direct,
        ),
        bars,
        gridlines,
        first_label,
        last_label,
        adds,
    }
}

/// How a period is named: its day, its week's first and last day, or its month.
fn label(period: &PeriodAdds, kind: UsagePeriod) -> String {
    match kind {
        UsagePeriod::Day => period.from.clone(),
        UsagePeriod::Week => format!("{} to {}", period.from, period.to),
        UsagePeriod::Month => period.from.get(..7).unwrap_or(&period.from).to_owned(),
    }
}

/// The smallest of 1, 2, 5, 10, 20, 50, … at least `at_least`.
fn nice_step(at_least: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for factor in [1, 2, 5] {
            let step = base.saturating_mul(factor);
            if step >= at_least || step == u64::MAX {
                return step;
            }
        }
        base = base.saturating_mul(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(day: u32, direct: u64, total: u64) -> PeriodAdds {
        PeriodAdds {
            from: format!("2024-10-{day:02}"),
            to: format!("2024-10-{day:02}"),
            adds: Adds { direct, total },
            versions: Vec::new(),
        }
    }

    #[test]
    fn bars_scale_to_the_highest_and_direct_stays_within_total() {
        let periods = [period(1, 1, 3), period(2, 0, 0), period(3, 7, 9)];
        let chart = chart(&periods, UsageRange::Days30, |p| p.adds);
        assert_eq!(chart.bars.len(), 3);
        assert_eq!(
            chart.adds,
            Adds {
                direct: 8,
                total: 12
            }
        );
        assert_eq!(
            chart.gridlines.last().unwrap().value,
            20,
            "9 / 4 rounds up to steps of 5"
        );
        for bar in &chart.bars {
            assert!(bar.direct_height <= bar.total_height);
            assert_eq!(bar.total_y + bar.total_height, chart.baseline);
            assert!(bar.x >= LEFT && bar.x + bar.width <= WIDTH - RIGHT);
        }
        assert_eq!(chart.bars[1].total_height, 0);
        assert_eq!(chart.first_label, "2024-10-01");
        assert!(chart.summary.contains("12 in total, 8 of them direct"));
    }

    #[test]
    fn all_time_starts_at_the_first_adds_and_empty_ranges_still_draw() {
        let periods = [period(1, 0, 0), period(2, 0, 0), period(3, 1, 1)];
        let months = chart(&periods, UsageRange::All, |p| p.adds);
        assert_eq!(months.bars.len(), 1);
        assert_eq!(months.first_label, "2024-10");
        let empty = chart(&[period(1, 0, 0)], UsageRange::All, |p| p.adds);
        assert_eq!(empty.bars.len(), 1);
        assert_eq!(empty.gridlines.last().unwrap().value, STEPS);
        assert_eq!(nice_step(0), 1);
        assert_eq!(nice_step(3), 5);
        assert_eq!(nice_step(11), 20);
        assert_eq!(nice_step(u64::MAX), u64::MAX);
    }
}
