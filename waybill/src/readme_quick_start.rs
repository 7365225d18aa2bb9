//! The README's quick start is the `quick_start` example, which the test command compiles:
//! this check keeps the two the same, so the README cannot show code that no longer builds.

/// The lines of `text` between the quick start markers (the example's) or the rust block
/// after the quick start heading (the README's), without blank lines.
fn quick_start_lines(text: &str, begin: &str, end: &str) -> Vec<String> {
    let start = text.find(begin).expect("begin marker") + begin.len();
    let stop = start + text[start..].find(end).expect("end marker");
    text[start..stop]
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_quick_start_is_the_compiled_example() {
    let example = include_str!("../examples/quick_start.rs");
    let readme = include_str!("../../README.md");
    let compiled = quick_start_lines(
        example,
        "// README quick start begins\n",
        "// README quick start ends",
    );
    let shown = quick_start_lines(readme, "<!-- quick start -->\n```rust\n", "```");
    assert!(compiled.len() > 20, "the example has a body");
    assert_eq!(
        shown, compiled,
        "README.md's quick start differs from waybill/examples/quick_start.rs: copy the example \
         between its markers into the README"
    );
}
