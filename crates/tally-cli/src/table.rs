//! Aligned terminal tables. Widths count characters, not bytes, so names with diacritics
//! (Kılıçdaroğlu, Hołownia) line up.

pub enum Align {
    Left,
    Right,
}

pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            header: columns.iter().map(|c| c.0.to_string()).collect(),
            align: columns
                .iter()
                .map(|c| match c.1 {
                    Align::Left => Align::Left,
                    Align::Right => Align::Right,
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self, indent: usize) -> String {
        let n = self.header.len();
        let mut width = vec![0usize; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            out.push_str(&" ".repeat(indent));
            for (i, c) in cells.iter().enumerate().take(n) {
                let pad = width[i] - c.chars().count();
                if i > 0 {
                    out.push_str("  ");
                }
                match self.align[i] {
                    Align::Left => {
                        out.push_str(c);
                        if i + 1 < n {
                            out.push_str(&" ".repeat(pad));
                        }
                    }
                    Align::Right => {
                        out.push_str(&" ".repeat(pad));
                        out.push_str(c);
                    }
                }
            }
            out.push('\n');
        };
        line(&self.header, &mut out);
        let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule, &mut out);
        for r in &self.rows {
            line(r, &mut out);
        }
        out
    }
}

/// 27133842 -> "27,133,842".
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_by_characters() {
        let mut t = Table::new(&[("Name", Align::Left), ("Votes", Align::Right)]);
        t.row(vec!["Kılıçdaroğlu".into(), thousands(24595176)]);
        t.row(vec!["Oğan".into(), thousands(5)]);
        let s = t.render(0);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[2], "Kılıçdaroğlu  24,595,176");
        assert_eq!(lines[3], "Oğan                   5");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(999), "999");
    }
}
