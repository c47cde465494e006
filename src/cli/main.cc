// The pgwarden executable: wires the process's standard streams and terminal into the
// command-line library (cli/cli.h), which holds all the logic.
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/cli.h"

int main(int argc, char** argv) {
  // Logs go to standard error; standard output is for command results.
  spdlog::set_default_logger(spdlog::stderr_color_mt("pgwarden"));
  pgwarden::cli::CliIo io{std::cin, std::cout, std::cerr};
  io.stdin_is_tty = ::isatty(STDIN_FILENO) == 1;
  io.read_secret = pgwarden::cli::read_secret_from_terminal;
  return pgwarden::cli::run_cli(argc, argv, io);
}
