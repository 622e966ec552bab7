//! Bar charts drawn on the server as SVG, each with its numbers as a table beside it, so
//! they read without JavaScript, without images and without seeing them.

/// One chart: a title, its SVG, a sentence that sums it up, and its rows for the table.
pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub svg: String,
    pub summary: String,
    pub rows: Vec<(String, i64)>,
}

/// Text for SVG markup: the chart goes into the page as it is (`|safe`), so nothing in a
/// label or title may open a tag.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;
const LABEL: f64 = 14.0;

/// `values` as bars, one per label, scaled to the largest. `bad` colours the bars as trouble.
pub fn bars(
    id: &'static str,
    title: &'static str,
    labels: &[String],
    values: &[i64],
    bad: bool,
) -> Chart {
    let n = values.len().max(1) as f64;
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = WIDTH / n;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"{}-title\" viewBox=\"0 0 {WIDTH} {}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escaped(id),
        HEIGHT + LABEL
    );
    let (id_shown, title_shown) = (escaped(id), escaped(title));
    svg.push_str(&format!(
        "<title id=\"{id_shown}-title\">{title_shown}</title>"
    ));
    for (i, v) in values.iter().enumerate() {
        let h = (*v as f64 / max) * (HEIGHT - 4.0);
        let x = i as f64 * slot + 1.0;
        let y = HEIGHT - h;
        svg.push_str(&format!(
            "<rect class=\"bar{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {v}</title></rect>",
            if bad { " bad" } else { "" },
            (slot - 2.0).max(1.0),
            escaped(labels.get(i).map_or("", String::as_str)),
        ));
    }
    // First and last day under the axis.
    if let (Some(first), Some(last)) = (
        labels.first().map(|l| escaped(l)),
        labels.last().map(|l| escaped(l)),
    ) {
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\">{first}</text>",
            HEIGHT + LABEL - 2.0
        ));
        svg.push_str(&format!(
            "<text x=\"{WIDTH}\" y=\"{}\" text-anchor=\"end\">{last}</text>",
            HEIGHT + LABEL - 2.0
        ));
    }
    svg.push_str("</svg>");
    let total: i64 = values.iter().sum();
    let peak = values.iter().copied().max().unwrap_or(0);
    let summary = format!(
        "{total} in the last {} days; at most {peak} on one day.",
        values.len()
    );
    Chart {
        id,
        title,
        svg,
        summary,
        rows: labels.iter().cloned().zip(values.iter().copied()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_carry_their_numbers() {
        let labels: Vec<String> = (1..=3).map(|d| format!("12-0{d}")).collect();
        let c = bars("t", "Test", &labels, &[0, 5, 10], false);
        assert_eq!(c.svg.matches("<rect").count(), 3);
        assert!(c.svg.contains("height=\"116.0\""), "{}", c.svg);
        assert!(c.svg.contains("height=\"58.0\""));
        assert!(c.svg.contains("<title>12-02: 5</title>"));
        assert_eq!(c.summary, "15 in the last 3 days; at most 10 on one day.");
        assert_eq!(c.rows[2], ("12-03".to_string(), 10));
        // No data draws empty bars, not a division by zero.
        let empty = bars("e", "Empty", &labels, &[0, 0, 0], true);
        assert!(empty.svg.contains("height=\"0.0\"") && empty.svg.contains("class=\"bar bad\""));
    }

    #[test]
    fn labels_and_titles_cannot_open_a_tag() {
        let labels = vec!["<script>x</script>".to_string(), "a\"b".to_string()];
        let c = bars("c", "t<i>", &labels, &[1, 2], false);
        assert!(
            !c.svg.contains("<script>") && !c.svg.contains("<i>"),
            "{}",
            c.svg
        );
        assert!(
            c.svg.contains("&lt;script&gt;") && c.svg.contains("a&quot;b"),
            "{}",
            c.svg
        );
    }
}
