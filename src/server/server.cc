#include "server/server.h"

#include <signal.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <thread>

#include "server/logging.h"
#include "server/runtime.h"
#include "server/session.h"
#include "server/stream.h"

namespace pgwarden::server {
namespace {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Declaration order matters for destruction: the io_context destroys unfinished session
// coroutines, whose destructors still use `sessions`; acceptors must go before their io.
struct Worker {
  SessionSet sessions;
  asio::io_context io{1};
  std::vector<std::pair<std::unique_ptr<tcp::acceptor>, std::string>> acceptors;
  std::thread thread;
};

awaitable<void> accept_loop(Runtime& runtime, Worker& worker, tcp::acceptor& acceptor,
                            std::string listener) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
        co_return;
      }
      // EMFILE and friends: back off briefly instead of spinning.
      spdlog::warn("listener \"{}\": accept failed: {}", listener, ec.message());
      asio::steady_timer pause(worker.io, std::chrono::milliseconds(100));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    std::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(worker.io, run_session(runtime, worker.sessions, std::move(socket), listener),
                   [&runtime](const std::exception_ptr& e) {
                     // run_session() catches what run() throws; this is what escapes before
                     // the session exists (its constructor, e.g. out of memory).
                     if (e) {
                       ++runtime.session_exceptions;
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         spdlog::error("a session could not start: {}", ex.what());
                       } catch (...) {
                         spdlog::error("a session could not start: unknown exception");
                       }
                     }
                   });
  }
}

bool is_loopback(const config::HostPort& hp) {
  std::error_code ec;
  auto addr = asio::ip::make_address(hp.host, ec);
  if (ec) {
    return hp.host == "localhost";
  }
  return addr.is_loopback();
}

std::vector<tcp::endpoint> resolve_listen(const config::HostPort& hp, std::string& error) {
  asio::io_context io;
  tcp::resolver resolver(io);
  std::error_code ec;
  auto results = resolver.resolve(hp.host, std::to_string(hp.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  std::vector<tcp::endpoint> out;
  if (ec) {
    error = ec.message();
    return out;
  }
  for (const auto& r : results) {
    if (std::find(out.begin(), out.end(), r.endpoint()) == out.end()) {
      out.push_back(r.endpoint());
    }
  }
  return out;
}

bool same_listeners(const config::Config& a, const config::Config& b) {
  if (a.listeners.size() != b.listeners.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.listeners.size(); ++i) {
    if (a.listeners[i].name != b.listeners[i].name ||
        a.listeners[i].listen.host != b.listeners[i].listen.host ||
        a.listeners[i].listen.port != b.listeners[i].listen.port) {
      return false;
    }
  }
  return true;
}

void reload(Runtime& runtime, const ServerOptions& options) {
  auto current = runtime.generation();
  auto result = config::load_config_file(options.config_path, options.load_options);
  for (const auto& w : result.warnings) {
    spdlog::warn("reload: {}", w.to_string());
  }
  std::string refusal;
  if (!result.ok()) {
    for (const auto& e : result.errors) {
      spdlog::error("reload: {}", e.to_string());
    }
    refusal = std::to_string(result.errors.size()) + " configuration error(s)";
  } else if (auto missing = unsupported_features(*result.config); !missing.empty()) {
    for (const auto& m : missing) {
      spdlog::error("reload: {}", m);
    }
    refusal = "the new configuration uses features this build does not implement";
  } else if (!same_listeners(*current->config, *result.config)) {
    refusal = "listeners (names and listen addresses) cannot change on reload; restart instead";
  }
  std::shared_ptr<const Generation> next;
  if (refusal.empty()) {
    auto g = make_generation(result.config);
    if (!g) {
      refusal = g.error();
    } else {
      next = *g;
    }
  }
  if (!refusal.empty()) {
    spdlog::error("reload refused: {}; keeping the running configuration", refusal);
    runtime.reopen_audit(current->config->audit);
    return;
  }
  runtime.set_generation(next);
  runtime.reopen_audit(next->config->audit);
  configure_logging(next->config->server.log_level, next->config->server.log_format);
  spdlog::info("configuration reloaded from {}", options.config_path.string());
}

}  // namespace

std::vector<std::string> unsupported_features(const config::Config& config) {
  std::vector<std::string> out;
  for (const auto& l : config.listeners) {
    for (auto m : l.auth) {
      if (m == config::AuthMethod::Token || m == config::AuthMethod::ApiKey ||
          m == config::AuthMethod::Tailscale) {
        out.push_back("listener \"" + l.name + "\": auth method \"" +
                      std::string(config::to_string(m)) + "\" is not implemented in this build");
      }
    }
  }
  for (const auto& [name, b] : config.backends) {
    if (b.credentials == config::Credentials::Provision) {
      out.push_back("backend \"" + name +
                    "\": credentials = \"provision\" is not implemented in this build");
    }
  }
  if (!config.grants.empty()) {
    out.push_back(
        "[[grant]] entries are not enforced by this build; remove them to run as a plain "
        "proxy (every authenticated identity may use the listener's backend)");
  }
  return out;
}

int run_server(std::shared_ptr<const config::Config> config, const ServerOptions& options) {
  configure_logging(config->server.log_level, config->server.log_format);
  if (auto missing = unsupported_features(*config); !missing.empty()) {
    for (const auto& m : missing) {
      spdlog::error("{}", m);
    }
    spdlog::error("not starting: the configuration uses features this build does not implement");
    return 1;
  }
  if (config->server.admin_listen) {
    spdlog::warn("admin_listen is set, but the metrics/health endpoint is not implemented yet");
  }
  if (config->audit.path && config->audit.statements != config::AuditStatements::None) {
    spdlog::warn(
        "audit: statement events are not implemented yet; only session events are written");
  }
  auto generation = make_generation(config);
  if (!generation) {
    spdlog::error("not starting: {}", generation.error());
    return 1;
  }
  std::unique_ptr<audit::AuditLog> audit_log;
  if (config->audit.path) {
    auto opened = audit::AuditLog::open(*config->audit.path);
    if (!opened) {
      spdlog::error("not starting: audit log {}: {}", config->audit.path->string(), opened.error());
      return 1;
    }
    audit_log = std::move(*opened);
  }
  Runtime runtime(*generation, std::move(audit_log));

  unsigned workers = config->server.workers;
  if (workers == 0) {
    workers = std::max(1u, std::thread::hardware_concurrency());
  }
  std::vector<std::unique_ptr<Worker>> pool;
  for (unsigned i = 0; i < workers; ++i) {
    pool.push_back(std::make_unique<Worker>());
  }

  for (const auto& l : config->listeners) {
    if (l.has_auth(config::AuthMethod::Trust) && !is_loopback(l.listen)) {
      spdlog::warn("listener \"{}\": auth method \"trust\" on a non-loopback address ({}:{})",
                   l.name, l.listen.host, l.listen.port);
    }
    std::string error;
    auto endpoints = resolve_listen(l.listen, error);
    if (endpoints.empty()) {
      spdlog::error("not starting: listener \"{}\": cannot resolve {}: {}", l.name, l.listen.host,
                    error);
      return 1;
    }
    for (const auto& ep : endpoints) {
      for (auto& w : pool) {
        auto acceptor = std::make_unique<tcp::acceptor>(w->io);
        std::error_code ec;
        acceptor->open(ep.protocol(), ec);
        if (!ec) {
          acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
        }
        if (!ec) {
          acceptor->set_option(reuse_port(true), ec);
        }
        if (!ec && ep.address().is_v6()) {
          acceptor->set_option(asio::ip::v6_only(true), ec);
        }
        if (!ec) {
          acceptor->bind(ep, ec);
        }
        if (!ec) {
          acceptor->listen(asio::socket_base::max_listen_connections, ec);
        }
        if (ec) {
          spdlog::error("not starting: listener \"{}\": cannot listen on {}: {}", l.name,
                        ep.address().to_string() + ":" + std::to_string(ep.port()), ec.message());
          return 1;
        }
        w->acceptors.emplace_back(std::move(acceptor), l.name);
      }
      spdlog::info("listener \"{}\" on {}:{} (tls {}, auth {})", l.name, ep.address().to_string(),
                   ep.port(), config::to_string(l.tls), [&] {
                     std::string s;
                     for (auto m : l.auth) {
                       s += (s.empty() ? "" : ",") + std::string(config::to_string(m));
                     }
                     return s;
                   }());
    }
  }

  // Signals are handled on the main thread; block them while worker threads start so the
  // kernel never delivers one to a worker before asio's handler is in place.
  asio::io_context main_io{1};
  asio::signal_set signals(main_io, SIGHUP, SIGTERM, SIGINT);
  ::signal(SIGPIPE, SIG_IGN);

  for (auto& w : pool) {
    for (auto& [acceptor, name] : w->acceptors) {
      asio::co_spawn(w->io, accept_loop(runtime, *w, *acceptor, name), asio::detached);
    }
  }
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& w : pool) {
    guards.push_back(asio::make_work_guard(w->io));
    w->thread = std::thread([&io = w->io] { io.run(); });
  }
  spdlog::info("pgwarden ready: {} worker(s)", workers);

  bool draining = false;
  bool killed = false;
  asio::steady_timer grace(main_io);
  asio::steady_timer poll(main_io);

  // After the FATAL has had kAbortDelay to go out, sessions still alive (a client that
  // stopped reading blocks the write) are closed outright, so shutdown always completes.
  constexpr auto kAbortDelay = std::chrono::seconds(2);
  asio::steady_timer abort_timer(main_io);
  auto kill_all = [&] {
    if (killed) {
      return;
    }
    killed = true;
    for (auto& w : pool) {
      asio::post(w->io, [&w = *w] {
        w.sessions.for_each([](Session& s) {
          kill_session(s, "57P01", "terminating connection due to administrator command");
        });
      });
    }
    abort_timer.expires_after(kAbortDelay);
    abort_timer.async_wait([&](std::error_code ec) {
      if (ec) {
        return;
      }
      for (auto& w : pool) {
        asio::post(w->io, [&w = *w] { w.sessions.for_each(abort_session); });
      }
    });
  };
  std::function<void()> poll_done = [&] {
    poll.expires_after(std::chrono::milliseconds(50));
    poll.async_wait([&](std::error_code ec) {
      if (ec) {
        return;
      }
      if (runtime.live_sessions.load() == 0) {
        grace.cancel();
        abort_timer.cancel();
        signals.cancel();
        return;
      }
      poll_done();
    });
  };
  auto start_drain = [&] {
    draining = true;
    runtime.draining = true;
    spdlog::info("shutting down: draining sessions for up to {}",
                 config::format_duration(config->server.shutdown_grace));
    for (auto& w : pool) {
      asio::post(w->io, [&w = *w] {
        for (auto& [acceptor, name] : w.acceptors) {
          std::error_code ignored;
          acceptor->close(ignored);
        }
        w.sessions.for_each([](Session& s) { drain_session(s); });
      });
    }
    grace.expires_after(config->server.shutdown_grace);
    grace.async_wait([&](std::error_code ec) {
      if (!ec) {
        spdlog::info("shutdown_grace expired: ending the remaining sessions");
        kill_all();
      }
    });
    poll_done();
  };
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](std::error_code ec, int sig) {
      if (ec) {
        return;
      }
      if (sig == SIGHUP) {
        reload(runtime, options);
      } else if (!draining) {
        start_drain();
      } else {
        spdlog::info("second shutdown signal: ending every session now");
        kill_all();
      }
      wait_signal();
    });
  };
  wait_signal();
  main_io.run();

  guards.clear();
  for (auto& w : pool) {
    w->io.stop();
    w->thread.join();
  }
  spdlog::info("pgwarden stopped");
  return 0;
}

}  // namespace pgwarden::server
