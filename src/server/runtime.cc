#include "server/runtime.h"

#include <spdlog/spdlog.h>

#include "crypto/random.h"

namespace pgwarden::server {

const config::Listener* Generation::find_listener(std::string_view name) const {
  for (const auto& l : config->listeners) {
    if (l.name == name) {
      return &l;
    }
  }
  return nullptr;
}

std::expected<std::shared_ptr<const Generation>, std::string> make_generation(
    std::shared_ptr<const config::Config> config) {
  auto g = std::make_shared<Generation>();
  g->config = config;
  for (const auto& l : config->listeners) {
    if (l.tls == config::ListenerTls::Disable) {
      continue;
    }
    auto tls = tls::ServerTls::create(l);
    if (!tls) {
      return std::unexpected("listener \"" + l.name + "\": " + tls.error());
    }
    g->listener_tls.emplace(l.name, ListenerTls{*tls});
  }
  for (const auto& [name, b] : config->backends) {
    auto rt = std::make_shared<BackendRuntime>();
    rt->config = config;
    rt->backend = &b;
    if (b.tls != config::BackendTls::Disable) {
      auto tls = tls::UpstreamTls::create(b);
      if (!tls) {
        return std::unexpected("backend \"" + name + "\": " + tls.error());
      }
      rt->tls = *tls;
    }
    g->backends.emplace(name, std::move(rt));
  }
  return g;
}

Runtime::Runtime(std::shared_ptr<const Generation> generation,
                 std::unique_ptr<audit::AuditLog> audit)
    : generation_(std::move(generation)),
      audit_(std::move(audit)),
      cancels_(static_cast<std::uint8_t>(generation_->config->cluster.instance_id),
               !generation_->config->cluster.peers.empty()) {
  for (const auto& l : generation_->config->listeners) {
    listeners_.emplace(l.name, std::make_unique<ListenerState>(l));
  }
}

std::shared_ptr<const Generation> Runtime::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

void Runtime::set_generation(std::shared_ptr<const Generation> g) {
  std::lock_guard lock(mutex_);
  for (const auto& l : g->config->listeners) {
    auto it = listeners_.find(l.name);
    if (it != listeners_.end()) {
      it->second->limiter.reconfigure(l.auth_failure_limit, l.auth_failure_window);
    }
  }
  generation_ = std::move(g);
}

void Runtime::audit(const nlohmann::json& event) {
  std::shared_ptr<audit::AuditLog> log;
  {
    std::lock_guard lock(mutex_);
    log = audit_;
  }
  if (log) {
    log->write(event);
  }
}

void Runtime::reopen_audit(const config::AuditConfig& audit_config) {
  std::shared_ptr<audit::AuditLog> current;
  {
    std::lock_guard lock(mutex_);
    current = audit_;
  }
  if (!audit_config.path) {
    std::lock_guard lock(mutex_);
    audit_.reset();
    return;
  }
  if (current && current->path() == *audit_config.path) {
    if (auto r = current->reopen(); !r) {
      spdlog::error("audit log: could not reopen: {}", r.error());
    }
    return;
  }
  auto opened = audit::AuditLog::open(*audit_config.path);
  if (!opened) {
    spdlog::error("audit log: could not open {}: {}; keeping the previous one",
                  audit_config.path->string(), opened.error());
    return;
  }
  std::lock_guard lock(mutex_);
  audit_ = std::move(*opened);
}

std::uint64_t Runtime::new_session_id() {
  std::array<std::byte, 8> b{};
  std::uint64_t id = 0;
  if (crypto::random_bytes(b)) {
    std::memcpy(&id, b.data(), b.size());
  }
  return id != 0 ? id : ++fallback_id_;
}

}  // namespace pgwarden::server
