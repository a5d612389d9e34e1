//! Progress bars (indicatif), hidden when stderr is not a terminal.
