//! `docs/ADMIN-CLI.md` and the clap definitions agree: every subcommand has a heading there
//! that starts with its path (`### topics alter-config TOPIC`), and every long option of a
//! command is named in that command's sections. A command or flag added without its
//! documentation fails here.

use clap::CommandFactory;

use super::Cli;

const DOC: &str = include_str!("../../../docs/ADMIN-CLI.md");

/// The text of every section whose heading starts with `path` (the path followed by the end
/// of the heading or a space), up to the next heading; `None` if no heading does.
fn sections(path: &str) -> Option<String> {
    let mut text = String::new();
    let mut inside = false;
    let mut found = false;
    for line in DOC.lines() {
        if let Some(heading) = line.strip_prefix('#') {
            let heading = heading.trim_start_matches('#').trim();
            inside = heading
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '));
            found |= inside;
        }
        if inside {
            text.push_str(line);
            text.push('\n');
        }
    }
    found.then_some(text)
}

/// Every command below `command` as (path, its long options), `path` naming `command`.
fn walk(command: &clap::Command, path: &str, into: &mut Vec<(String, Vec<String>)>) {
    for sub in command.get_subcommands() {
        // clap's generated `help` subcommand is not ours to document.
        if sub.get_name() == "help" {
            continue;
        }
        let sub_path = if path.is_empty() {
            sub.get_name().to_owned()
        } else {
            format!("{path} {}", sub.get_name())
        };
        let flags = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .filter(|long| *long != "help")
            .map(|long| format!("--{long}"))
            .collect();
        into.push((sub_path.clone(), flags));
        walk(sub, &sub_path, into);
    }
}

#[test]
fn every_subcommand_and_flag_is_in_the_admin_cli_reference() {
    let mut command = Cli::command();
    command.build();
    let mut commands = Vec::new();
    walk(&command, "", &mut commands);
    // topics (8 commands), groups (4), cluster (4), elect-leaders, reassign, reassignments and
    // the nouns themselves: a walk that found few would be checking nothing.
    assert!(commands.len() >= 22, "{commands:?}");
    let mut missing = Vec::new();
    for (path, flags) in &commands {
        let Some(text) = sections(path) else {
            missing.push(format!("no heading for `{path}`"));
            continue;
        };
        for flag in flags {
            if !text.contains(flag.as_str()) {
                missing.push(format!("`{path}` does not mention {flag}"));
            }
        }
    }
    for global in command.get_arguments().filter(|a| a.is_global_set()) {
        let long = format!("--{}", global.get_long().expect("a long global option"));
        if !DOC.contains(&long) {
            missing.push(format!("global option {long} not mentioned"));
        }
    }
    assert!(missing.is_empty(), "docs/ADMIN-CLI.md: {missing:#?}");
}

#[test]
fn a_section_is_found_by_its_exact_path() {
    assert!(sections("reassign").unwrap().contains("--replicas"));
    assert!(!sections("reassign")
        .unwrap()
        .contains("no reassignment in progress"));
    assert!(sections("topics frobnicate").is_none());
}
