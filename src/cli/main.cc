// The pgwarden executable: wires the process's standard streams and terminal into the
// command-line library (cli/cli.h), which holds all the logic.
#include <unistd.h>

#include <iostream>

#include "cli/cli.h"

int main(int argc, char** argv) {
  pgwarden::cli::CliIo io{std::cin, std::cout, std::cerr};
  io.stdin_is_tty = ::isatty(STDIN_FILENO) == 1;
  io.read_secret = pgwarden::cli::read_secret_from_terminal;
  return pgwarden::cli::run_cli(argc, argv, io);
}
