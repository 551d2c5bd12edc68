//! The layers an image build made itself, read from its output.
//!
//! The engine's (classic) builder prints, for each step, either `---> Using
//! cache` and the id of a layer it reused, or `---> Running in <container>`,
//! the step's output and the id of the layer it made. A failed or interrupted
//! build leaves the layers it made behind, untagged and unlabelled; this is
//! how they are found again, to be removed.

/// Reads the output of a (classic) image build and notes the layers the build
/// itself made — not those it took from the cache — so that what a failed or
/// interrupted build left behind can be removed.
#[derive(Debug, Default, Clone)]
pub struct BuildLayers {
    running: bool,
    made: Vec<String>,
}

impl BuildLayers {
    /// A reader that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one line of build output; returns the id of a layer the build
    /// just made, if the line announced one.
    pub fn read(&mut self, line: &str) -> Option<String> {
        let line = line.trim();
        if line.starts_with("Step ") {
            self.running = false;
            return None;
        }
        let rest = line.strip_prefix("---> ")?.trim();
        if rest.starts_with("Running in ") {
            self.running = true;
            return None;
        }
        if rest == "Using cache" {
            self.running = false;
            return None;
        }
        let is_id = rest.len() >= 12 && rest.chars().all(|c| c.is_ascii_hexdigit());
        if is_id && std::mem::take(&mut self.running) {
            self.made.push(rest.to_string());
            return Some(rest.to_string());
        }
        None
    }

    /// The layers made so far, oldest first.
    pub fn made(&self) -> &[String] {
        &self.made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_s_own_layers_are_told_apart_from_cached_ones() {
        let output = [
            "Step 1/4 : FROM base",
            " ---> f99464881078",
            "Step 2/4 : RUN echo one",
            " ---> Using cache",
            " ---> 486ead4f46f1",
            "Step 3/4 : RUN echo two",
            " ---> Running in 576141dfe7d8",
            "two",
            "Removing intermediate container 576141dfe7d8",
            " ---> 0e876ff294e0",
            "Step 4/4 : RUN false",
            " ---> Running in e24b71a49687",
        ];
        let mut layers = BuildLayers::new();
        let announced: Vec<String> = output.iter().filter_map(|l| layers.read(l)).collect();
        assert_eq!(announced, ["0e876ff294e0"]);
        assert_eq!(layers.made(), ["0e876ff294e0"]);
    }
}
