// Who a client is, as established by one of the listener's authentication methods (SPEC
// section 3). An Identity is produced only by an auth method after it has verified the
// client (password proof, certificate chain, token signature, tailnet lookup); nothing in it
// is what the client merely claimed, except for `trust` and `passthrough`, whose identity is
// the startup user by definition. Policy (grants) matches `name` and `groups`; the audit log
// records all of it. It never holds a secret: no password, token, key or proof, only names
// and descriptive attributes.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/config.h"

namespace pgwarden::identity {

struct Identity {
  std::string name;  // user name, certificate CN/SAN, token claim, tailnet login, key name
  config::AuthMethod method = config::AuthMethod::Trust;
  std::vector<std::string> groups;  // "analysts", "tag:ci", ... as grants spell them
  // Descriptive facts for audit and policy, e.g. "cert_subject", "node". Keys are chosen by
  // the auth method, never by the client.
  std::map<std::string, std::string> attributes;

  bool operator==(const Identity&) const = default;
};

}  // namespace pgwarden::identity
