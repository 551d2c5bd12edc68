//! The fetch helper as a program of its own: reads one fetch request on
//! standard input, fetches, answers on standard output (see
//! `kraken_lib::fetcher`). The `kraken` binary serves as its own helper; this
//! one is for programs that cannot (the library's own tests use it).

fn main() {
    std::process::exit(kraken_lib::fetcher::child_main());
}
