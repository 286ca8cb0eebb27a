//! Units and unit words at the end of an answer (`5 cm`, `864 inches^2`, `30 degrees`).

/// Units and filler words dropped at the end of an answer (`5 cm`, `864 inches^2`).
const UNITS: &[&str] = &[
    "square units",
    "sq units",
    "square feet",
    "square inches",
    "square meters",
    "square cm",
    "sq ft",
    "sq in",
    "units",
    "unit",
    "cm",
    "mm",
    "km",
    "m",
    "meters",
    "meter",
    "metres",
    "centimeters",
    "millimeters",
    "kilometers",
    "inches",
    "inch",
    "in",
    "feet",
    "foot",
    "ft",
    "yards",
    "yard",
    "yd",
    "miles",
    "mile",
    "mi",
    "mph",
    "dollars",
    "dollar",
    "cents",
    "cent",
    "hours",
    "hour",
    "hrs",
    "hr",
    "minutes",
    "minute",
    "mins",
    "min",
    "seconds",
    "second",
    "sec",
    "s",
    "days",
    "day",
    "weeks",
    "week",
    "months",
    "month",
    "years",
    "year",
    "kg",
    "g",
    "grams",
    "gram",
    "pounds",
    "pound",
    "lbs",
    "lb",
    "ounces",
    "oz",
    "liters",
    "liter",
    "ml",
    "gallons",
    "gallon",
    "points",
    "point",
    "people",
    "students",
    "marbles",
    "cookies",
    "apples",
    "eggs",
    "times",
    "ways",
    "sq",
];

/// Drop one trailing unit word (with an optional `^2`/`^{3}`); degree and percent words
/// become their signs.
pub(crate) fn strip_trailing_units(s: &str) -> String {
    let mut body = s.trim_end();
    let mut power = "";
    for p in ["^2", "^3", "^{2}", "^{3}"] {
        if let Some(rest) = body.strip_suffix(p) {
            power = p;
            body = rest;
            break;
        }
    }
    let lower_tail = |w: &str| {
        body.len() > w.len()
            && body.is_char_boundary(body.len() - w.len())
            && body[body.len() - w.len()..].eq_ignore_ascii_case(w)
    };
    for (word, sign) in
        [("degrees", "^\\circ"), ("degree", "^\\circ"), ("percentage", "%"), ("percent", "%"), ("pct", "%")]
    {
        if power.is_empty() && lower_tail(word) {
            let rest = &body[..body.len() - word.len()];
            if rest.ends_with(|c: char| !c.is_ascii_alphabetic()) {
                return format!("{}{sign}", rest.trim_end());
            }
        }
    }
    for &unit in UNITS {
        if !lower_tail(unit) {
            continue;
        }
        let rest = &body[..body.len() - unit.len()];
        let prev = rest.chars().last();
        // The unit must be a separate word after a value: `5 cm`, `5cm`, `\frac12 cm`.
        let single = unit.len() == 1;
        let ok = match prev {
            Some(' ') => rest.trim_end().ends_with(|c: char| c.is_ascii_digit() || matches!(c, '}' | ')' | '%' | '.')),
            Some(c) if !single => c.is_ascii_digit() || c == '}',
            _ => false,
        };
        if ok {
            return rest.trim_end().to_string();
        }
    }
    s.to_string()
}
