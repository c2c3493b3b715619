//! Failpoints: named places in the store and the Raft transport where a test or a chaos run can
//! make the code fail, panic or slow down, to see what a failing disk or a slow one does.
//!
//! They are set with `SYMPHONY_FAILPOINTS`, read once at start: `name=action` pairs separated by
//! `;`, where an action is `error` (the place returns an I/O error), `enospc` (the error a full
//! disk gives), `panic`, `sleep(MS)` (the place waits that long each time) or `off`. A file named
//! by `SYMPHONY_FAILPOINTS_FILE` (or the agent's `--failpoints-file`) is read again at every
//! check, so a running agent's failpoints can be turned on and off (tests and the chaos nemesis
//! do). Places: `store.commit` (every store
//! write), `store.fsync` (every durable commit), `snapshot.build`, `snapshot.install`,
//! `snapshot.send`, `membership.change`.
//!
//! Compiled only into debug builds and builds with the `failpoints` feature: a release build
//! checks nothing and costs nothing.

/// Has every check also read `path` (as `SYMPHONY_FAILPOINTS_FILE` would); the agent's hidden
/// `--failpoints-file` flag calls this.
pub fn use_file(path: std::path::PathBuf) {
    let _ = FILE.set(path);
}

static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Checks the failpoint `name`: `Err` when it is set to fail, after sleeping when it is set to
/// sleep.
#[cfg(any(debug_assertions, feature = "failpoints"))]
#[allow(clippy::panic)] // a failpoint set to panic is there to panic
pub fn check(name: &str) -> std::io::Result<()> {
    match action(name) {
        Action::Off => Ok(()),
        Action::Error => Err(std::io::Error::other(format!("failpoint {name}"))),
        Action::NoSpace => Err(std::io::Error::from(std::io::ErrorKind::StorageFull)),
        Action::Sleep(millis) => {
            std::thread::sleep(std::time::Duration::from_millis(millis));
            Ok(())
        }
        Action::Panic => panic!("failpoint {name}"),
    }
}

#[cfg(not(any(debug_assertions, feature = "failpoints")))]
#[inline(always)]
pub fn check(_name: &str) -> std::io::Result<()> {
    Ok(())
}

// What follows parses the failpoint specs; a release build without the feature has none.
#[cfg(any(debug_assertions, feature = "failpoints", test))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Off,
    Error,
    NoSpace,
    Sleep(u64),
    Panic,
}

#[cfg(any(debug_assertions, feature = "failpoints"))]
fn action(name: &str) -> Action {
    static FIXED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let fixed = FIXED.get_or_init(|| std::env::var("SYMPHONY_FAILPOINTS").unwrap_or_default());
    if let Some(action) = find(fixed, name) {
        return action;
    }
    let path = FILE
        .get()
        .cloned()
        .or_else(|| std::env::var_os("SYMPHONY_FAILPOINTS_FILE").map(Into::into));
    if let Some(path) = path
        && let Ok(text) = std::fs::read_to_string(path)
        && let Some(action) = find(&text, name)
    {
        return action;
    }
    Action::Off
}

/// The action `spec` gives `name`, if it names it.
#[cfg(any(debug_assertions, feature = "failpoints", test))]
fn find(spec: &str, name: &str) -> Option<Action> {
    spec.split([';', '\n'])
        .filter_map(|pair| pair.split_once('='))
        .find(|(point, _)| point.trim() == name)
        .map(|(_, action)| parse(action.trim()))
}

#[cfg(any(debug_assertions, feature = "failpoints", test))]
fn parse(action: &str) -> Action {
    match action {
        "error" => Action::Error,
        "enospc" => Action::NoSpace,
        "panic" => Action::Panic,
        other => other
            .strip_prefix("sleep(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|millis| millis.parse().ok())
            .map_or(Action::Off, Action::Sleep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_places_and_actions() {
        let spec = "store.fsync=sleep(50); store.commit=enospc\nsnapshot.build=panic";
        assert_eq!(find(spec, "store.fsync"), Some(Action::Sleep(50)));
        assert_eq!(find(spec, "store.commit"), Some(Action::NoSpace));
        assert_eq!(find(spec, "snapshot.build"), Some(Action::Panic));
        assert_eq!(find(spec, "membership.change"), None);
        assert_eq!(find("a=whatever", "a"), Some(Action::Off));
    }
}
