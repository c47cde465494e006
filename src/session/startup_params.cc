#include "session/startup_params.h"

#include <algorithm>
#include <cctype>

#include "wire/message_type.h"

namespace pgwarden::session {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool starts_with_own(std::string_view name) {
  return lower(name.substr(0, kOwnSettingPrefix.size())) == kOwnSettingPrefix;
}

// "name=value" of a -c / -- switch; the name is case-insensitive, as GUC names are.
std::expected<bool, std::string> take_own(std::string_view setting,
                                          std::map<std::string, std::string>& own) {
  if (!starts_with_own(setting)) {
    return false;
  }
  const auto eq = setting.find('=');
  if (eq == std::string_view::npos) {
    return std::unexpected("pgwarden setting in options needs a value (name=value)");
  }
  std::string name = lower(setting.substr(0, eq));
  if (name.size() == kOwnSettingPrefix.size()) {
    return std::unexpected("empty pgwarden setting name in options");
  }
  own[std::move(name)] = std::string(setting.substr(eq + 1));
  return true;
}

std::string escape(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (is_space(c) || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::expected<std::string, std::string> strip_own_options(std::string_view options,
                                                          std::map<std::string, std::string>& own) {
  std::vector<std::string> tokens;
  std::string current;
  bool in_token = false;
  for (std::size_t i = 0; i < options.size(); ++i) {
    const char c = options[i];
    if (is_space(c)) {
      if (in_token) {
        tokens.push_back(std::move(current));
        current.clear();
        in_token = false;
      }
      continue;
    }
    in_token = true;
    if (c == '\\' && i + 1 < options.size()) {
      current.push_back(options[++i]);
    } else {
      current.push_back(c);
    }
  }
  if (in_token) {
    tokens.push_back(std::move(current));
  }

  std::vector<std::string_view> kept;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    std::string_view t = tokens[i];
    std::string_view setting;
    std::size_t consumed = 1;
    if (t == "-c") {
      if (i + 1 >= tokens.size()) {
        return std::unexpected("options ends with -c and no setting");
      }
      setting = tokens[i + 1];
      consumed = 2;
    } else if (t.starts_with("-c")) {
      setting = t.substr(2);
    } else if (t.starts_with("--")) {
      setting = t.substr(2);
    }
    if (!setting.empty()) {
      auto is_own = take_own(setting, own);
      if (!is_own) {
        return std::unexpected(is_own.error());
      }
      if (*is_own) {
        i += consumed - 1;
        continue;
      }
    }
    for (std::size_t k = 0; k < consumed; ++k) {
      kept.push_back(tokens[i + k]);
    }
    i += consumed - 1;
  }
  std::string out;
  for (auto t : kept) {
    if (!out.empty()) {
      out.push_back(' ');
    }
    out += escape(t);
  }
  return out;
}

std::expected<UpstreamStartup, std::string> build_upstream_startup(
    const wire::StartupMessage& client, std::string_view user, std::string_view database) {
  UpstreamStartup up;
  up.minor = static_cast<std::uint16_t>(std::min<std::uint32_t>(client.minor, 2));
  up.parameters.emplace_back("user", std::string(user));
  up.parameters.emplace_back("database", std::string(database));
  for (const auto& p : client.parameters) {
    if (p.is_protocol_option()) {
      up.unrecognized_options.emplace_back(p.name);
      continue;
    }
    if (p.name == "user" || p.name == "database") {
      continue;
    }
    if (p.name == "replication") {
      up.replication = true;
      continue;
    }
    if (starts_with_own(p.name)) {
      std::string name = lower(p.name);
      if (name.size() == kOwnSettingPrefix.size()) {
        return std::unexpected("empty pgwarden setting name");
      }
      up.own_settings[std::move(name)] = std::string(p.value);
      continue;
    }
    if (p.name == "options") {
      auto stripped = strip_own_options(p.value, up.own_settings);
      if (!stripped) {
        return std::unexpected(stripped.error());
      }
      if (!stripped->empty()) {
        up.parameters.emplace_back("options", std::move(*stripped));
      }
      continue;
    }
    up.parameters.emplace_back(std::string(p.name), std::string(p.value));
  }
  return up;
}

}  // namespace pgwarden::session
