//! A line diff of two multi-line strings, for plans: a changed machine config (kilobytes
//! of YAML) printed as one JSON string on one line said nothing about what changed.
//! Shown as Terraform shows a changed heredoc: the changed lines marked `-`/`+`, with a
//! few unchanged lines of context and the rest counted.

/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;

/// Lines of the changed middle (after the common start and end) beyond which no
/// alignment is attempted (the table would take `old × new` cells): the middle is shown
/// as removed, then added.
const MAX_ALIGNED: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The lines of `before` and `after`, each with its mark (`' '`, `-`, `+`), unchanged
/// runs beyond the context replaced by `# (N unchanged lines hidden)`.
pub fn line_diff(before: &str, after: &str) -> Vec<String> {
    let ops = operations(before, after);
    let changed: Vec<bool> = ops.iter().map(|op| !matches!(op, Op::Same(_))).collect();
    // A line is shown when a change is within CONTEXT lines of it.
    let mut shown = vec![false; ops.len()];
    for (i, _) in changed.iter().enumerate().filter(|(_, c)| **c) {
        let from = i.saturating_sub(CONTEXT);
        let to = (i + CONTEXT + 1).min(ops.len());
        shown[from..to].iter_mut().for_each(|s| *s = true);
    }
    let mut out = Vec::new();
    let mut hidden = 0;
    for (op, shown) in ops.iter().zip(shown) {
        if !shown {
            hidden += 1;
            continue;
        }
        if hidden > 0 {
            out.push(hidden_note(hidden));
            hidden = 0;
        }
        out.push(match op {
            Op::Same(line) => format!("  {line}"),
            Op::Removed(line) => format!("- {line}"),
            Op::Added(line) => format!("+ {line}"),
        });
    }
    if hidden > 0 {
        out.push(hidden_note(hidden));
    }
    out
}

fn hidden_note(count: usize) -> String {
    format!(
        "  # ({count} unchanged line{} hidden)",
        if count == 1 { "" } else { "s" }
    )
}

fn operations<'a>(before: &'a str, after: &'a str) -> Vec<Op<'a>> {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old_middle, new_middle) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut ops: Vec<Op> = old[..prefix].iter().map(|l| Op::Same(l)).collect();
    if old_middle.len() > MAX_ALIGNED || new_middle.len() > MAX_ALIGNED {
        ops.extend(old_middle.iter().map(|l| Op::Removed(l)));
        ops.extend(new_middle.iter().map(|l| Op::Added(l)));
    } else {
        ops.extend(aligned(old_middle, new_middle));
    }
    ops.extend(old[old.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

/// A longest-common-subsequence alignment, removals before additions where a run of
/// lines is replaced.
fn aligned<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (old.len(), new.len());
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[at(i, j)] = if old[i] == new[j] {
                common[at(i + 1, j + 1)] + 1
            } else {
                common[at(i + 1, j)].max(common[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            ops.push(Op::Same(old[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || common[at(i + 1, j)] >= common[at(i, j + 1)]) {
            ops.push(Op::Removed(old[i]));
            i += 1;
        } else {
            ops.push(Op::Added(new[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_changed_lines_and_their_context_are_shown() {
        let before: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let after = before
            .replace("line 10\n", "line ten\n")
            .replace("line 19\n", "");
        assert_eq!(
            line_diff(&before, &after),
            [
                "  # (6 unchanged lines hidden)",
                "  line 7",
                "  line 8",
                "  line 9",
                "- line 10",
                "+ line ten",
                "  line 11",
                "  line 12",
                "  line 13",
                "  # (2 unchanged lines hidden)",
                "  line 16",
                "  line 17",
                "  line 18",
                "- line 19",
                "  line 20",
            ]
        );
    }

    #[test]
    fn added_and_removed_lines_align_around_the_common_ones() {
        assert_eq!(
            line_diff("a\nb\nc\n", "a\nx\nc\nd\n"),
            ["  a", "- b", "+ x", "  c", "+ d"]
        );
        assert_eq!(line_diff("", "a\n"), ["+ a"]);
    }
}
