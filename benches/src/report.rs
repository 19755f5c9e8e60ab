//! The summary table printed after criterion's own report: per row, the
//! program's kernel-timed ns/packet, the `xdp_pass` baseline's beside it,
//! and their difference.

use std::fmt;

use crate::measure::Measure;

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The path measured.
    pub path: &'static str,
    /// How it was timed, with the number of runs.
    pub method: String,
    /// The program's mean ns per run.
    pub program_ns: f64,
    /// The baseline's mean ns per run, on the same frames, alternately.
    pub baseline_ns: f64,
    /// Medians of one-run calls (program, baseline), for rows timed so.
    pub medians: Option<(f64, f64)>,
}

impl Line {
    /// The line of a measured row; `None` if criterion ran none of it (a
    /// filter, `--list`).
    pub fn of<P: Copy>(m: &Measure<'_, P>) -> Option<Self> {
        Some(Self {
            path: m.row().path,
            method: m.row().method(m.program.runs()),
            program_ns: m.program.mean_ns()?,
            baseline_ns: m.beside.mean_ns()?,
            medians: m.program.median_ns().zip(m.beside.median_ns()),
        })
    }

    /// Program minus baseline, ns per run.
    pub fn difference_ns(&self) -> f64 {
        self.program_ns - self.baseline_ns
    }
}

/// The table of one bench.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Program name, as a column title (`kawaii`).
    pub program: &'static str,
    /// The lines, in row order.
    pub lines: Vec<Line>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut title = self.program.to_owned();
        if let Some(c) = title.get_mut(..1) {
            c.make_ascii_uppercase();
        }
        writeln!(
            f,
            "{title} XDP, BPF_PROG_TEST_RUN, kernel-timed ns/packet ({} CPUs)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )?;
        writeln!(
            f,
            "{:<34} {:<24} {:>10} {:>10} {:>11} {:>18}",
            "path", "method", self.program, "xdp_pass", "difference", "medians k/pass"
        )?;
        for l in &self.lines {
            let med = l
                .medians
                .map_or(String::from("-"), |(k, b)| format!("{k:.0}/{b:.0}ns"));
            writeln!(
                f,
                "{:<34} {:<24} {:>8.1}ns {:>8.1}ns {:>9.1}ns {:>18}",
                l.path,
                l.method,
                l.program_ns,
                l.baseline_ns,
                l.difference_ns(),
                med
            )?;
        }
        writeln!(
            f,
            "(means over every run criterion made, warm-up included; xdp_pass ran \
             alternately on the same frames; one call per packet includes the \
             kernel's per-call timer overhead, which xdp_pass shows)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_line_per_row() {
        let s = Summary {
            program: "kawaii",
            lines: vec![Line {
                path: "drop (malformed IPv4)",
                method: "10 runs, repeat".into(),
                program_ns: 12.5,
                baseline_ns: 10.0,
                medians: None,
            }],
        };
        let text = s.to_string();
        assert!(text.starts_with("Kawaii XDP"));
        assert!(text.contains("drop (malformed IPv4)"));
        assert!(text.contains("2.5ns"));
        assert_eq!(text.lines().count(), 4);
    }
}
