// The pgwarden server: one io_context per worker thread (workers = 0: one per core), one
// SO_REUSEPORT acceptor per listener address per worker so the kernel spreads connections
// across workers, and every session owned by one coroutine on the worker that accepted it.
//
// The main thread only handles signals:
//  - SIGHUP: reload. The configuration file (and the users files, certificates and password
//    files it names) is read and validated again; on any error the reason is logged and the
//    running configuration stays. Listeners (names and addresses) cannot change on reload.
//    Live sessions keep the generation they started with; new sessions use the new one.
//    The audit log is reopened (rotation) in every case.
//  - SIGTERM/SIGINT: drain. Acceptors close; idle sessions end at once and busy ones at
//    their next idle point, with FATAL 57P01; after shutdown_grace whatever is left gets
//    FATAL 57P01 too. A second signal skips the grace period. run_server() then returns 0.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/loader.h"

namespace pgwarden::server {

struct ServerOptions {
  std::filesystem::path config_path;
  config::LoadOptions load_options;
};

// Features the configuration uses that this build does not implement yet. A non-empty list
// means refusing to start (fail closed: e.g. a grant that is not enforced would be a hole).
std::vector<std::string> unsupported_features(const config::Config& config);

// Runs until a drain completes. Returns the process exit code (0 after a drain, 1 when it
// could not start: bad TLS material, an address it cannot bind, ...).
int run_server(std::shared_ptr<const config::Config> config, const ServerOptions& options);

}  // namespace pgwarden::server
