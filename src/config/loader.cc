#include "config/loader.h"

#include <openssl/crypto.h>

#include <sys/stat.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "config/enum_names.h"

namespace pgwarden::config {
namespace {

namespace fs = std::filesystem;
using namespace detail;  // NOLINT: the enum tables

std::string shown(std::string_view s) {
  // Only values of non-secret keys are ever shown (never passwords or secrets); they may be
  // long or contain control characters: cap and escape them.
  constexpr std::size_t kMaxShown = 64;
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMaxShown) {
    out += "...";
  }
  out += '"';
  return out;
}

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::uint32_t line_of(const toml::node& n) {
  const auto line = n.source().begin.line;
  return line == 0 ? 1 : static_cast<std::uint32_t>(line);
}

bool is_identifier_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool is_simple_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxIdentifierBytes &&
         std::all_of(s.begin(), s.end(), is_identifier_char);
}

bool has_control_chars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// "name", "schema.name", with '*' wildcards in either part ("public.*", "*.audit_*", "*").
bool is_valid_object_pattern(std::string_view p) {
  if (p.empty() || p.size() > 2 * kMaxIdentifierBytes + 1) {
    return false;
  }
  const auto dot = p.find('.');
  const auto check_part = [](std::string_view part) {
    return !part.empty() && part.size() <= kMaxIdentifierBytes &&
           std::all_of(part.begin(), part.end(), [](char c) {
             return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '$' || c == '*' || static_cast<unsigned char>(c) >= 0x80;
           });
  };
  if (dot == std::string_view::npos) {
    return check_part(p);
  }
  return check_part(p.substr(0, dot)) && check_part(p.substr(dot + 1));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

class Loader;

// A view of one TOML table that remembers which keys were consulted, so that every key
// nobody asked for is reported as unknown by finish().
class Section {
 public:
  Section(Loader& loader, const toml::table& table, std::string path)
      : loader_(loader), table_(table), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  std::uint32_t line() const { return line_of(table_); }
  std::string key_path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  // The node for `key` (marked as known), or null when absent.
  const toml::node* get(std::string_view key) {
    known_.insert(std::string(key));
    return table_.get(key);
  }
  bool has(std::string_view key) const { return table_.contains(key); }
  std::uint32_t line_of_key(std::string_view key) const {
    const auto* n = table_.get(key);
    return n != nullptr ? line_of(*n) : line();
  }

  std::optional<std::string> string(std::string_view key);
  std::optional<std::string> required_string(std::string_view key);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  std::optional<bool> boolean(std::string_view key);
  std::optional<Duration> duration(std::string_view key, Duration min = Duration{0},
                                   Duration max = kMaxDuration);
  std::optional<std::uint64_t> size(std::string_view key, std::uint64_t min, std::uint64_t max);
  std::optional<std::vector<std::string>> string_list(std::string_view key,
                                                      bool allow_single = false);
  std::optional<fs::path> path_value(std::string_view key);
  std::optional<HostPort> address(std::string_view key,
                                  std::optional<std::uint16_t> default_port = std::nullopt);
  std::optional<Secret> secret(std::string_view key);

  template <typename Table>
  std::optional<EnumOf<Table>> enumeration(std::string_view key, const Table& table);
  template <typename Table>
  std::optional<std::vector<EnumOf<Table>>> enum_list(std::string_view key, const Table& table,
                                                      bool allow_duplicates = false);

  // Reports every key of the table that no getter asked for.
  void finish();

 private:
  Loader& loader_;
  const toml::table& table_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

class Loader {
 public:
  // `file_mode`: the st_mode of the configuration file, when it was read from one.
  Loader(std::string file, fs::path base_dir, const LoadOptions& options,
         std::optional<mode_t> file_mode = std::nullopt)
      : file_(std::move(file)),
        base_dir_(std::move(base_dir)),
        options_(options),
        file_mode_(file_mode) {}

  LoadResult run(std::string_view text);

  void error(std::uint32_t line, std::string message) {
    errors_.push_back(Diagnostic{file_, line, std::move(message)});
  }
  void warn(std::uint32_t line, std::string message) {
    warnings_.push_back(Diagnostic{file_, line, std::move(message)});
  }
  const EnvLookup& env() const { return options_.env; }

  fs::path resolve(const fs::path& p) const {
    if (p.is_absolute()) {
      return p.lexically_normal();
    }
    return (base_dir_ / p).lexically_normal();
  }

  // Checks that `p` is a readable regular file of bounded size. Returns its contents when
  // `read` is set. Reports under `what` (a key path) at `line`.
  std::optional<std::string> check_file(const fs::path& p, const std::string& what,
                                        std::uint32_t line, bool read = false,
                                        bool warn_world_readable = false);
  void check_pem(const fs::path& p, const std::string& what, std::uint32_t line,
                 bool is_private_key);
  // A secret in a file that every local user can read (or rewrite) is no secret: warns when
  // `mode` gives others any access to the file at `p`.
  void warn_if_world_accessible(mode_t mode, const std::string& what, const fs::path& p,
                                std::uint32_t line) {
    if ((mode & (S_IROTH | S_IWOTH)) != 0) {
      warn(line, what + ": " + shown(p.string()) + " is accessible by every user (chmod o-rwx)");
    }
  }
  // `what` (a key path) holds a secret written in the configuration file itself.
  void warn_inline_secret(const std::string& what, std::uint32_t line) {
    if (file_mode_) {
      warn_if_world_accessible(*file_mode_, what + " (inline secret)", file_, line);
    }
  }
  std::optional<Secret> read_secret_file(const fs::path& p, const std::string& what,
                                         std::uint32_t line);

 private:
  void load_server(Section& root, Config& cfg);
  void load_audit(Section& root, Config& cfg);
  void load_cluster(Section& root, Config& cfg);
  void load_backends(Section& root, Config& cfg);
  void load_backend(Section& s, Backend& b);
  void load_rules(Section& root, Config& cfg);
  void load_rule_set(Section& s, RuleSet& r);
  void load_listeners(Section& root, Config& cfg);
  void load_listener(Section& s, Listener& l, const Config& cfg);
  void load_token(Section& s, Listener& l);
  void load_api_keys(Section& s, Listener& l);
  void load_grants(Section& root, Config& cfg);
  void cross_check(const Config& cfg, std::uint32_t root_line);

  // Each element of an array of tables at `key`, or errors for the wrong shape.
  std::vector<std::pair<const toml::table*, std::string>> tables_of(Section& s,
                                                                    std::string_view key,
                                                                    std::string_view hint);

  void sort_diagnostics(Diagnostics& d) const {
    std::vector<std::size_t> order(d.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
      order[i] = i;
    }
    const auto key = [&](std::size_t i) {
      return std::tuple<bool, const std::string&, std::uint32_t, std::size_t>(
          d[i].file != file_, d[i].file, d[i].line, i);
    };
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return key(a) < key(b); });
    Diagnostics sorted;
    sorted.reserve(d.size());
    for (const auto i : order) {
      sorted.push_back(std::move(d[i]));
    }
    d = std::move(sorted);
  }

  std::string file_;
  fs::path base_dir_;
  const LoadOptions& options_;
  std::optional<mode_t> file_mode_;
  Diagnostics errors_;
  Diagnostics warnings_;
  std::vector<std::uint32_t> listener_lines_;
  std::map<std::string, std::uint32_t, std::less<>> backend_lines_;
};

// ---- Section getters ----

std::optional<std::string> Section::string(std::string_view key) {
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  const auto* v = n->as_string();
  if (v == nullptr) {
    loader_.error(line_of(*n),
                  key_path(key) + ": expected a string, got " + std::string(type_name(*n)));
    return std::nullopt;
  }
  auto expanded = expand_env(v->get(), loader_.env());
  if (!expanded) {
    loader_.error(line_of(*n), key_path(key) + ": " + expanded.error());
    return std::nullopt;
  }
  return std::move(*expanded);
}

std::optional<std::string> Section::required_string(std::string_view key) {
  if (!has(key)) {
    loader_.error(line(), (path_.empty() ? std::string("") : path_ + ": ") +
                              "missing required key \"" + std::string(key) + "\"");
    get(key);
    return std::nullopt;
  }
  return string(key);
}

std::optional<Secret> Section::secret(std::string_view key) {
  auto s = string(key);
  if (!s) {
    return std::nullopt;
  }
  Secret out(std::move(*s));
  // Text outside ${NAME} references is the secret itself, written in this file: expanding
  // every reference to nothing leaves exactly that text.
  static const EnvLookup kNothing = [](std::string_view) -> std::optional<std::string> {
    return std::string();
  };
  if (auto literal = expand_env(get(key)->as_string()->get(), kNothing)) {
    Secret wiped(std::move(*literal));
    if (!wiped.empty()) {
      loader_.warn_inline_secret(key_path(key), line_of_key(key));
    }
  }
  return out;
}

std::optional<std::int64_t> Section::integer(std::string_view key, std::int64_t min,
                                             std::int64_t max) {
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  const auto* v = n->as_integer();
  if (v == nullptr) {
    loader_.error(line_of(*n),
                  key_path(key) + ": expected an integer, got " + std::string(type_name(*n)));
    return std::nullopt;
  }
  const std::int64_t x = v->get();
  if (x < min || x > max) {
    loader_.error(line_of(*n), key_path(key) + ": " + std::to_string(x) + " is out of range (" +
                                   std::to_string(min) + ".." + std::to_string(max) + ")");
    return std::nullopt;
  }
  return x;
}

std::optional<bool> Section::boolean(std::string_view key) {
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  const auto* v = n->as_boolean();
  if (v == nullptr) {
    loader_.error(line_of(*n), key_path(key) + ": expected a boolean (true or false), got " +
                                   std::string(type_name(*n)));
    return std::nullopt;
  }
  return v->get();
}

std::optional<Duration> Section::duration(std::string_view key, Duration min, Duration max) {
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  if (n->is_integer()) {
    loader_.error(line_of(*n), key_path(key) +
                                   ": a duration needs a unit and is written as a string, e.g. "
                                   "\"30s\"");
    return std::nullopt;
  }
  auto s = string(key);
  if (!s) {
    return std::nullopt;
  }
  auto d = parse_duration(*s);
  if (!d) {
    loader_.error(line_of(*n), key_path(key) + ": " + d.error());
    return std::nullopt;
  }
  if (*d < min || *d > max) {
    loader_.error(line_of(*n), key_path(key) + ": " + format_duration(*d) + " is out of range (" +
                                   format_duration(min) + ".." + format_duration(max) + ")");
    return std::nullopt;
  }
  return *d;
}

std::optional<std::uint64_t> Section::size(std::string_view key, std::uint64_t min,
                                           std::uint64_t max) {
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  if (const auto* i = n->as_integer()) {
    if (i->get() < 0) {
      loader_.error(line_of(*n), key_path(key) + ": a size cannot be negative");
      return std::nullopt;
    }
    value = static_cast<std::uint64_t>(i->get());
  } else if (n->is_string()) {
    auto s = string(key);
    if (!s) {
      return std::nullopt;
    }
    auto parsed = parse_size(*s);
    if (!parsed) {
      loader_.error(line_of(*n), key_path(key) + ": " + parsed.error());
      return std::nullopt;
    }
    value = *parsed;
  } else {
    loader_.error(line_of(*n), key_path(key) +
                                   ": expected a size (an integer number of bytes or "
                                   "a string such as \"8KiB\"), got " +
                                   std::string(type_name(*n)));
    return std::nullopt;
  }
  if (value < min || value > max) {
    loader_.error(line_of(*n), key_path(key) + ": " + std::to_string(value) +
                                   " bytes is out of range (" + std::to_string(min) + ".." +
                                   std::to_string(max) + ")");
    return std::nullopt;
  }
  return value;
}

std::optional<std::vector<std::string>> Section::string_list(std::string_view key,
                                                             bool allow_single) {
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  if (allow_single && n->is_string()) {
    auto s = string(key);
    if (!s) {
      return std::nullopt;
    }
    return std::vector<std::string>{std::move(*s)};
  }
  const auto* arr = n->as_array();
  if (arr == nullptr) {
    loader_.error(line_of(*n), key_path(key) + ": expected an array of strings" +
                                   (allow_single ? std::string(" or a string") : std::string()) +
                                   ", got " + std::string(type_name(*n)));
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto& el = *arr->get(i);
    const auto* v = el.as_string();
    if (v == nullptr) {
      loader_.error(line_of(el), key_path(key) + "[" + std::to_string(i) +
                                     "]: expected a string, got " + std::string(type_name(el)));
      ok = false;
      continue;
    }
    auto expanded = expand_env(v->get(), loader_.env());
    if (!expanded) {
      loader_.error(line_of(el),
                    key_path(key) + "[" + std::to_string(i) + "]: " + expanded.error());
      ok = false;
      continue;
    }
    out.push_back(std::move(*expanded));
  }
  if (!ok) {
    return std::nullopt;
  }
  return out;
}

std::optional<fs::path> Section::path_value(std::string_view key) {
  auto s = string(key);
  if (!s) {
    return std::nullopt;
  }
  if (s->empty()) {
    loader_.error(line_of_key(key), key_path(key) + ": a path cannot be empty");
    return std::nullopt;
  }
  if (s->find('\0') != std::string::npos) {
    loader_.error(line_of_key(key), key_path(key) + ": a path cannot contain a NUL byte");
    return std::nullopt;
  }
  return loader_.resolve(fs::path(*s));
}

std::optional<HostPort> Section::address(std::string_view key,
                                         std::optional<std::uint16_t> default_port) {
  auto s = string(key);
  if (!s) {
    return std::nullopt;
  }
  auto hp = parse_host_port(*s, default_port);
  if (!hp) {
    loader_.error(line_of_key(key), key_path(key) + ": " + shown(*s) + ": " + hp.error());
    return std::nullopt;
  }
  return std::move(*hp);
}

template <typename Table>
std::optional<EnumOf<Table>> Section::enumeration(std::string_view key, const Table& table) {
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  auto s = string(key);
  if (!s) {
    return std::nullopt;
  }
  for (const auto& [name, value] : table) {
    if (*s == name) {
      return value;
    }
  }
  loader_.error(line_of(*n), key_path(key) + ": invalid value " + shown(*s) + "; expected one of " +
                                 allowed_list(table));
  return std::nullopt;
}

template <typename Table>
std::optional<std::vector<EnumOf<Table>>> Section::enum_list(std::string_view key,
                                                             const Table& table,
                                                             bool allow_duplicates) {
  using E = EnumOf<Table>;
  const auto* n = get(key);
  if (n == nullptr) {
    return std::nullopt;
  }
  auto names = string_list(key);
  if (!names) {
    return std::nullopt;
  }
  std::vector<E> out;
  bool ok = true;
  for (const auto& s : *names) {
    bool found = false;
    for (const auto& [name, value] : table) {
      if (s == name) {
        found = true;
        if (!allow_duplicates && std::find(out.begin(), out.end(), value) != out.end()) {
          loader_.error(line_of(*n), key_path(key) + ": " + shown(s) + " is listed twice");
          ok = false;
        } else {
          out.push_back(value);
        }
      }
    }
    if (!found) {
      loader_.error(line_of(*n), key_path(key) + ": invalid value " + shown(s) +
                                     "; expected one of " + allowed_list(table));
      ok = false;
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  return out;
}

void Section::finish() {
  for (const auto& [k, v] : table_) {
    if (known_.find(k.str()) == known_.end()) {
      const auto kl = k.source().begin.line;
      const std::uint32_t line = kl != 0 ? static_cast<std::uint32_t>(kl) : line_of(v);
      loader_.error(line, "unknown key " + shown(key_path(k.str())));
    }
  }
}

// ---- Files ----

std::optional<std::string> Loader::check_file(const fs::path& p, const std::string& what,
                                              std::uint32_t line, bool read,
                                              bool warn_world_readable) {
  if (!options_.check_files) {
    return std::nullopt;
  }
  const std::string shown_path = shown(p.string());
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    error(line, what + ": cannot access " + shown_path + ": " + std::strerror(errno));
    return std::nullopt;
  }
  // A FIFO or device (e.g. /dev/zero) would block or never end: regular files only.
  if (!S_ISREG(st.st_mode)) {
    error(line, what + ": " + shown_path + " is not a regular file");
    return std::nullopt;
  }
  if (static_cast<std::uint64_t>(st.st_size) > kMaxReferencedFileBytes &&
      !what.ends_with("users_file")) {
    error(line, what + ": " + shown_path + " is larger than " +
                    std::to_string(kMaxReferencedFileBytes) + " bytes");
    return std::nullopt;
  }
  if (static_cast<std::uint64_t>(st.st_size) > kMaxUsersFileBytes) {
    error(line, what + ": " + shown_path + " is larger than " + std::to_string(kMaxUsersFileBytes) +
                    " bytes");
    return std::nullopt;
  }
  if (warn_world_readable) {
    warn_if_world_accessible(st.st_mode, what, p, line);
  }
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    error(line, what + ": cannot read " + shown_path + ": " + std::strerror(errno));
    return std::nullopt;
  }
  if (!read) {
    return std::string();
  }
  std::string data;
  data.resize(static_cast<std::size_t>(st.st_size));
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<std::size_t>(in.gcount()));
  return data;
}

void Loader::check_pem(const fs::path& p, const std::string& what, std::uint32_t line,
                       bool is_private_key) {
  auto data = check_file(p, what, line, /*read=*/true, /*warn_world_readable=*/is_private_key);
  if (!data) {
    return;
  }
  if (data->find("-----BEGIN ") == std::string::npos) {
    error(line, what + ": " + shown(p.string()) + " is not a PEM file (no \"-----BEGIN\" line)");
  }
  // Private keys must not linger in freed heap memory.
  if (!data->empty()) {
    OPENSSL_cleanse(data->data(), data->size());
  }
}

std::optional<Secret> Loader::read_secret_file(const fs::path& p, const std::string& what,
                                               std::uint32_t line) {
  auto data = check_file(p, what, line, /*read=*/true, /*warn_world_readable=*/true);
  if (!data) {
    return std::nullopt;
  }
  Secret whole(std::move(*data));
  // The secret is the first line, without its line terminator (like PostgreSQL's passfile).
  std::string_view v = whole.reveal();
  v = v.substr(0, v.find('\n'));
  if (v.ends_with('\r')) {
    v.remove_suffix(1);
  }
  if (v.empty()) {
    error(line, what + ": " + shown(p.string()) + " is empty (the secret is its first line)");
    return std::nullopt;
  }
  return Secret(std::string(v));
}

std::vector<std::pair<const toml::table*, std::string>> Loader::tables_of(Section& s,
                                                                          std::string_view key,
                                                                          std::string_view hint) {
  std::vector<std::pair<const toml::table*, std::string>> out;
  const auto* n = s.get(key);
  if (n == nullptr) {
    return out;
  }
  const auto* arr = n->as_array();
  if (arr == nullptr) {
    error(line_of(*n), s.key_path(key) + ": expected an array of tables (" + std::string(hint) +
                           "), got " + std::string(type_name(*n)));
    return out;
  }
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto& el = *arr->get(i);
    const std::string path = s.key_path(key) + "[" + std::to_string(i) + "]";
    if (const auto* t = el.as_table()) {
      out.emplace_back(t, path);
    } else {
      error(line_of(el), path + ": expected a table, got " + std::string(type_name(el)));
    }
  }
  return out;
}

// ---- Sections ----

void Loader::load_server(Section& root, Config& cfg) {
  const auto* n = root.get("server");
  if (n == nullptr) {
    return;
  }
  const auto* t = n->as_table();
  if (t == nullptr) {
    error(line_of(*n), "server: expected a table ([server]), got " + std::string(type_name(*n)));
    return;
  }
  Section s(*this, *t, "server");
  auto& sv = cfg.server;
  if (auto v = s.integer("workers", 0, kMaxWorkers)) {
    sv.workers = static_cast<std::uint32_t>(*v);
  }
  if (auto v = s.address("admin_listen")) {
    if (!v->is_loopback()) {
      warn(s.line_of_key("admin_listen"),
           "server.admin_listen: metrics and health endpoints are exposed on a non-loopback "
           "address");
    }
    sv.admin_listen = std::move(*v);
  }
  if (auto v = s.enumeration("log_level", kLogLevels)) {
    sv.log_level = *v;
  }
  if (auto v = s.enumeration("log_format", kLogFormats)) {
    sv.log_format = *v;
  }
  if (auto v = s.duration("shutdown_grace")) {
    sv.shutdown_grace = *v;
  }
  s.finish();
}

void Loader::load_audit(Section& root, Config& cfg) {
  const auto* n = root.get("audit");
  if (n == nullptr) {
    return;
  }
  const auto* t = n->as_table();
  if (t == nullptr) {
    error(line_of(*n), "audit: expected a table ([audit]), got " + std::string(type_name(*n)));
    return;
  }
  Section s(*this, *t, "audit");
  if (s.has("path")) {
    const auto raw = s.string("path");
    if (raw && *raw == "-") {
      cfg.audit.path = fs::path("-");
    } else if (raw) {
      if (raw->empty()) {
        error(s.line_of_key("path"), "audit.path: a path cannot be empty (use \"-\" for stdout)");
      } else {
        const fs::path p = resolve(fs::path(*raw));
        cfg.audit.path = p;
        if (options_.check_files) {
          std::error_code ec;
          const auto dir = p.parent_path();
          if (!fs::is_directory(dir, ec)) {
            error(s.line_of_key("path"),
                  "audit.path: directory " + shown(dir.string()) + " does not exist");
          } else if (fs::exists(p, ec) && !fs::is_regular_file(p, ec)) {
            error(s.line_of_key("path"),
                  "audit.path: " + shown(p.string()) + " exists and is not a regular file");
          }
        }
      }
    }
  }
  if (auto v = s.enumeration("statements", kAuditStatements)) {
    cfg.audit.statements = *v;
  }
  if (auto v = s.enumeration("literals", kAuditLiterals)) {
    cfg.audit.literals = *v;
  }
  s.finish();
}

void Loader::load_cluster(Section& root, Config& cfg) {
  const auto* n = root.get("cluster");
  if (n == nullptr) {
    return;
  }
  const auto* t = n->as_table();
  if (t == nullptr) {
    error(line_of(*n), "cluster: expected a table ([cluster]), got " + std::string(type_name(*n)));
    return;
  }
  Section s(*this, *t, "cluster");
  if (auto v = s.integer("instance_id", 0, kMaxInstanceId)) {
    cfg.cluster.instance_id = static_cast<std::uint32_t>(*v);
  }
  std::map<std::uint32_t, std::uint32_t> seen;  // id -> line
  for (const auto& [pt, path] : tables_of(s, "peers", "[[cluster.peers]]")) {
    Section ps(*this, *pt, path);
    ClusterPeer peer;
    bool ok = true;
    if (!ps.has("instance_id")) {
      error(ps.line(), path + ": missing required key \"instance_id\"");
      ok = false;
    }
    if (auto v = ps.integer("instance_id", 0, kMaxInstanceId)) {
      peer.instance_id = static_cast<std::uint32_t>(*v);
    } else {
      ok = false;
    }
    if (!ps.has("address")) {
      error(ps.line(), path + ": missing required key \"address\"");
      ok = false;
    }
    if (auto v = ps.address("address")) {
      peer.address = std::move(*v);
    } else {
      ok = false;
    }
    ps.finish();
    if (!ok) {
      continue;
    }
    if (peer.instance_id == cfg.cluster.instance_id) {
      error(ps.line(), path + ": instance_id " + std::to_string(peer.instance_id) +
                           " is this instance's own cluster.instance_id");
    } else if (auto [it, inserted] = seen.emplace(peer.instance_id, ps.line()); !inserted) {
      error(ps.line(), path + ": instance_id " + std::to_string(peer.instance_id) +
                           " is already used by the peer on line " + std::to_string(it->second));
    }
    cfg.cluster.peers.push_back(std::move(peer));
  }
  s.finish();
}

void Loader::load_backends(Section& root, Config& cfg) {
  const auto* n = root.get("backend");
  if (n == nullptr) {
    return;
  }
  const auto* t = n->as_table();
  if (t == nullptr) {
    error(line_of(*n),
          "backend: expected tables ([backend.NAME]), got " + std::string(type_name(*n)));
    return;
  }
  for (const auto& [k, v] : *t) {
    const std::string name(k.str());
    const std::string path = "backend." + name;
    const auto* bt = v.as_table();
    if (bt == nullptr) {
      error(line_of(v),
            path + ": expected a table ([" + path + "]), got " + std::string(type_name(v)));
      continue;
    }
    if (!is_simple_name(name)) {
      error(line_of(*bt), path + ": backend names use letters, digits, '_' and '-' (at most " +
                              std::to_string(kMaxIdentifierBytes) + " bytes)");
    }
    if (name == kAdminConsoleBackend) {
      error(line_of(*bt), path + ": the name \"pgwarden\" is reserved for the admin console");
    }
    Section s(*this, *bt, path);
    Backend b;
    b.name = name;
    load_backend(s, b);
    s.finish();
    backend_lines_[name] = s.line();
    cfg.backends.emplace(name, std::move(b));
  }
}

void Loader::load_backend(Section& s, Backend& b) {
  const std::string& p = s.path();
  if (!s.has("address")) {
    error(s.line(), p + ": missing required key \"address\"");
  }
  if (auto v = s.address("address", kDefaultPostgresPort)) {
    b.address = std::move(*v);
    b.tls_server_name = b.address.host;
  }
  if (auto v = s.enumeration("tls", kBackendTls)) {
    b.tls = *v;
  }
  if (auto v = s.path_value("tls_ca")) {
    check_pem(*v, p + ".tls_ca", s.line_of_key("tls_ca"), false);
    b.tls_ca = std::move(*v);
  }
  if (auto v = s.string("tls_server_name")) {
    const HostPort as_host{*v, 1};
    if (!is_valid_dns_name(*v) && !as_host.is_ip_literal()) {
      error(s.line_of_key("tls_server_name"),
            p + ".tls_server_name: " + shown(*v) + " is not a host name or IP address");
    }
    b.tls_server_name = std::move(*v);
  }
  if (auto v = s.path_value("tls_client_cert")) {
    check_pem(*v, p + ".tls_client_cert", s.line_of_key("tls_client_cert"), false);
    b.tls_client_cert = std::move(*v);
  }
  if (auto v = s.path_value("tls_client_key")) {
    check_pem(*v, p + ".tls_client_key", s.line_of_key("tls_client_key"), true);
    b.tls_client_key = std::move(*v);
  }
  if (s.has("tls_client_cert") != s.has("tls_client_key")) {
    error(s.line(), p + ": tls_client_cert and tls_client_key must be set together");
  }
  if (b.tls == BackendTls::Disable) {
    for (const auto* key : {"tls_ca", "tls_server_name", "tls_client_cert", "tls_client_key"}) {
      if (s.has(key)) {
        warn(s.line_of_key(key), p + "." + key + " has no effect with tls = \"disable\"");
      }
    }
  } else if (b.tls == BackendTls::VerifyCa && s.has("tls_server_name")) {
    warn(s.line_of_key("tls_server_name"),
         p + ".tls_server_name is not checked with tls = \"verify-ca\" (use \"verify-full\")");
  }
  if (auto v = s.enumeration("credentials", kCredentials)) {
    b.credentials = *v;
  }
  const auto identifier = [&](std::string_view key) -> std::optional<std::string> {
    auto v = s.string(key);
    if (v && (v->empty() || v->size() > kMaxIdentifierBytes || has_control_chars(*v) ||
              v->find('\0') != std::string::npos)) {
      error(s.line_of_key(key), p + "." + std::string(key) + ": must be 1.." +
                                    std::to_string(kMaxIdentifierBytes) +
                                    " bytes without control characters");
      return std::nullopt;
    }
    return v;
  };
  b.user = identifier("user");
  b.password = s.secret("password");
  if (auto v = s.path_value("password_file")) {
    if (s.has("password")) {
      error(s.line_of_key("password_file"), p + ": set password or password_file, not both");
    } else if (auto secret =
                   read_secret_file(*v, p + ".password_file", s.line_of_key("password_file"))) {
      b.password = std::move(*secret);
    }
    b.password_file = std::move(*v);
  }
  b.database = identifier("database");
  b.admin_user = identifier("admin_user");
  b.admin_password = s.secret("admin_password");
  if (auto v = s.path_value("admin_password_file")) {
    if (s.has("admin_password")) {
      error(s.line_of_key("admin_password_file"),
            p + ": set admin_password or admin_password_file, not both");
    } else if (auto secret = read_secret_file(*v, p + ".admin_password_file",
                                              s.line_of_key("admin_password_file"))) {
      b.admin_password = std::move(*secret);
    }
    b.admin_password_file = std::move(*v);
  }
  if (auto v = identifier("admin_database")) {
    b.admin_database = std::move(*v);
  }
  if (auto v = s.string("role_prefix")) {
    // The prefix starts every provisioned role name: keep it a plain lower-case identifier
    // so that no quoting is ever needed, and out of PostgreSQL's reserved "pg_" namespace.
    const bool chars_ok = !v->empty() && (((*v)[0] >= 'a' && (*v)[0] <= 'z') || (*v)[0] == '_') &&
                          std::all_of(v->begin(), v->end(), [](char c) {
                            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
                          });
    if (!chars_ok || v->size() > kMaxRolePrefixBytes) {
      error(s.line_of_key("role_prefix"),
            p + ".role_prefix: must be 1.." + std::to_string(kMaxRolePrefixBytes) +
                " bytes of lower-case letters, digits and '_', starting with a letter or '_'");
    } else if (v->starts_with("pg_")) {
      error(s.line_of_key("role_prefix"),
            p + ".role_prefix: role names starting with \"pg_\" are reserved by PostgreSQL");
    } else {
      b.role_prefix = std::move(*v);
    }
  }
  if (auto v = s.duration("role_ttl", std::chrono::minutes(1))) {
    b.role_ttl = *v;
  }
  if (auto v = s.duration("role_valid_for", std::chrono::minutes(1))) {
    b.role_valid_for = *v;
  }
  if (auto v = s.duration("janitor_interval", std::chrono::seconds(10))) {
    b.janitor_interval = *v;
  }
  if (auto v =
          s.duration("connect_timeout", std::chrono::milliseconds(100), std::chrono::minutes(10))) {
    b.connect_timeout = *v;
  }

  // Which keys belong to which credentials mode.
  switch (b.credentials) {
    case Credentials::Static:
      if (!s.has("user")) {
        error(s.line(), p + ": credentials = \"static\" needs \"user\"");
      }
      for (const auto* key :
           {"admin_user", "admin_password", "admin_password_file", "admin_database", "role_prefix",
            "role_ttl", "role_valid_for", "janitor_interval"}) {
        if (s.has(key)) {
          warn(s.line_of_key(key),
               p + "." + key + " is only used with credentials = \"provision\"");
        }
      }
      break;
    case Credentials::Provision:
      if (!s.has("admin_user")) {
        error(s.line(), p + ": credentials = \"provision\" needs \"admin_user\" (a role with "
                            "CREATEROLE)");
      }
      for (const auto* key : {"user", "password", "password_file"}) {
        if (s.has(key)) {
          error(s.line_of_key(key), p + "." + key +
                                        " cannot be used with credentials = \"provision\" (roles "
                                        "are created per identity)");
        }
      }
      break;
    case Credentials::Passthrough:
      for (const auto* key : {"user", "password", "password_file", "admin_user", "admin_password",
                              "admin_password_file"}) {
        if (s.has(key)) {
          error(s.line_of_key(key), p + "." + key +
                                        " cannot be used with credentials = \"passthrough\" (the "
                                        "client's own credentials are relayed)");
        }
      }
      break;
  }
}

void Loader::load_rules(Section& root, Config& cfg) {
  const auto* n = root.get("rules");
  if (n == nullptr) {
    return;
  }
  const auto* t = n->as_table();
  if (t == nullptr) {
    error(line_of(*n), "rules: expected tables ([rules.NAME]), got " + std::string(type_name(*n)));
    return;
  }
  for (const auto& [k, v] : *t) {
    const std::string name(k.str());
    const std::string path = "rules." + name;
    const auto* rt = v.as_table();
    if (rt == nullptr) {
      error(line_of(v),
            path + ": expected a table ([" + path + "]), got " + std::string(type_name(v)));
      continue;
    }
    if (!is_simple_name(name)) {
      error(line_of(*rt), path + ": rule set names use letters, digits, '_' and '-'");
    }
    Section s(*this, *rt, path);
    RuleSet r;
    r.name = name;
    load_rule_set(s, r);
    s.finish();
    cfg.rules.emplace(name, std::move(r));
  }
}

void Loader::load_rule_set(Section& s, RuleSet& r) {
  const std::string& p = s.path();
  if (auto v = s.enum_list("allow_statements", kStatementKinds)) {
    r.allow_statements = std::move(*v);
  }
  if (auto v = s.enum_list("deny_statements", kStatementKinds)) {
    r.deny_statements = std::move(*v);
  }
  for (const auto k : r.deny_statements) {
    if (std::find(r.allow_statements.begin(), r.allow_statements.end(), k) !=
        r.allow_statements.end()) {
      error(s.line_of_key("deny_statements"),
            p + ": \"" + std::string(to_string(k)) +
                "\" is in both allow_statements and deny_statements");
    }
  }
  if (const auto* n = s.get("require_where")) {
    if (const auto* b = n->as_boolean()) {
      if (b->get()) {
        r.require_where = {StatementKind::Update, StatementKind::Delete};
      }
    } else if (auto v = s.enum_list("require_where", kStatementKinds)) {
      for (const auto k : *v) {
        if (k != StatementKind::Update && k != StatementKind::Delete) {
          error(line_of(*n), p + ".require_where: " + shown(to_string(k)) +
                                 " has no WHERE clause to require; expected \"update\" and/or "
                                 "\"delete\" (or true for both)");
        } else {
          r.require_where.push_back(k);
        }
      }
    }
  }
  if (const auto* n = s.get("tables")) {
    if (const auto* tt = n->as_table()) {
      Section ts(*this, *tt, p + ".tables");
      for (const auto& [op_name, op] : kTableOperations) {
        const auto* on = ts.get(op_name);
        if (on == nullptr) {
          continue;
        }
        const auto* ot = on->as_table();
        if (ot == nullptr) {
          error(line_of(*on), ts.key_path(op_name) +
                                  ": expected a table such as { allow = [\"public.*\"], deny = "
                                  "[\"public.secrets\"] }, got " +
                                  std::string(type_name(*on)));
          continue;
        }
        Section os(*this, *ot, ts.key_path(op_name));
        TableAccess access;
        for (const auto* list_key : {"allow", "deny"}) {
          if (auto v = os.string_list(list_key)) {
            for (const auto& pattern : *v) {
              if (!is_valid_object_pattern(pattern)) {
                error(os.line_of_key(list_key),
                      os.key_path(list_key) + ": " + shown(pattern) +
                          " is not a table pattern (\"table\", \"schema.table\", \"schema.*\")");
              }
            }
            (std::string_view(list_key) == "allow" ? access.allow : access.deny) = std::move(*v);
          }
        }
        os.finish();
        r.tables.emplace(op, std::move(access));
      }
      ts.finish();
    } else {
      error(line_of(*n), p + ".tables: expected a table ([" + p + ".tables]), got " +
                             std::string(type_name(*n)));
    }
  }
  if (auto v = s.string_list("deny_functions")) {
    for (auto& f : *v) {
      if (!is_valid_object_pattern(f)) {
        error(s.line_of_key("deny_functions"),
              p + ".deny_functions: " + shown(f) + " is not a function name or \"schema.name\"");
      }
      // Unquoted identifiers are folded to lower case by PostgreSQL; match likewise.
      std::transform(f.begin(), f.end(), f.begin(), [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      });
    }
    r.deny_functions = std::move(*v);
  }
  if (auto v = s.boolean("copy_program")) {
    r.copy_program = *v;
  }
  if (auto v = s.size("max_statement_bytes", 1, wire::kMaxMessage)) {
    r.max_statement_bytes = *v;
  }
  for (const auto& [mt, path] : tables_of(s, "mask", "[[" + p + ".mask]]")) {
    Section ms(*this, *mt, path);
    Mask m;
    if (auto v = ms.required_string("column")) {
      if (v->empty() || v->size() > kMaxIdentifierBytes) {
        error(ms.line_of_key("column"),
              path + ".column: must be 1.." + std::to_string(kMaxIdentifierBytes) + " bytes");
      }
      m.column = std::move(*v);
    }
    if (auto v = ms.string("table")) {
      if (!is_valid_object_pattern(*v)) {
        error(ms.line_of_key("table"), path + ".table: " + shown(*v) +
                                           " is not a table pattern (\"table\", \"schema.table\")");
      }
      m.table = std::move(*v);
    }
    if (auto v = ms.enumeration("method", kMaskMethods)) {
      m.method = *v;
    }
    ms.finish();
    r.masks.push_back(std::move(m));
  }
}

void Loader::load_token(Section& s, Listener& l) {
  const auto* n = s.get("token");
  if (n == nullptr) {
    return;
  }
  const auto* t = n->as_table();
  const std::string path = s.key_path("token");
  if (t == nullptr) {
    error(line_of(*n),
          path + ": expected a table ([listener.token]), got " + std::string(type_name(*n)));
    return;
  }
  Section ts(*this, *t, path);
  TokenConfig tok;
  if (auto v = ts.path_value("jwks_file")) {
    check_file(*v, path + ".jwks_file", ts.line_of_key("jwks_file"));
    tok.jwks_file = std::move(*v);
  }
  tok.secret = ts.secret("secret");
  if (auto v = ts.path_value("secret_file")) {
    if (ts.has("secret")) {
      error(ts.line_of_key("secret_file"), path + ": set secret or secret_file, not both");
    } else if (auto sec =
                   read_secret_file(*v, path + ".secret_file", ts.line_of_key("secret_file"))) {
      tok.secret = std::move(*sec);
    }
    tok.secret_file = std::move(*v);
  }
  const bool has_secret = ts.has("secret") || ts.has("secret_file");
  const bool has_jwks = ts.has("jwks_file");
  if (has_secret && has_jwks) {
    error(ts.line(), path + ": set either jwks_file or secret/secret_file, not both");
  } else if (!has_secret && !has_jwks) {
    error(ts.line(),
          path + ": needs jwks_file (RS256, ES256, EdDSA) or secret/secret_file (HS256)");
  }
  if (tok.secret && tok.secret->size() < kMinHs256SecretBytes) {
    error(ts.line_of_key(ts.has("secret") ? "secret" : "secret_file"),
          path + ": the HS256 secret must be at least " + std::to_string(kMinHs256SecretBytes) +
              " bytes (RFC 7518, section 3.2)");
  }
  if (auto v = ts.enum_list("algorithms", kTokenAlgorithms)) {
    if (v->empty()) {
      error(ts.line_of_key("algorithms"), path + ".algorithms: cannot be empty");
    }
    for (const auto a : *v) {
      const bool symmetric = a == TokenAlgorithm::Hs256;
      if (symmetric && has_jwks) {
        error(ts.line_of_key("algorithms"),
              path + ".algorithms: HS256 needs secret/secret_file, not a JWKS file");
      } else if (!symmetric && has_secret) {
        error(ts.line_of_key("algorithms"),
              path + ".algorithms: " + shown(name_of(kTokenAlgorithms, a)) +
                  " needs jwks_file; a shared secret only supports HS256");
      }
    }
    tok.algorithms = std::move(*v);
  } else if (!ts.has("algorithms")) {
    if (has_secret) {
      tok.algorithms = {TokenAlgorithm::Hs256};
    } else {
      tok.algorithms = {TokenAlgorithm::Rs256, TokenAlgorithm::Es256, TokenAlgorithm::EdDsa};
    }
  }
  if (auto v = ts.string("issuer")) {
    if (v->empty()) {
      error(ts.line_of_key("issuer"), path + ".issuer: cannot be empty");
    }
    tok.issuer = std::move(*v);
  }
  if (auto v = ts.string_list("audience", /*allow_single=*/true)) {
    for (const auto& a : *v) {
      if (a.empty()) {
        error(ts.line_of_key("audience"), path + ".audience: values cannot be empty");
      }
    }
    tok.audience = std::move(*v);
  }
  for (const auto* key : {"identity_claim", "groups_claim"}) {
    if (auto v = ts.string(key)) {
      if (v->empty()) {
        error(ts.line_of_key(key), path + "." + key + ": cannot be empty");
      }
      (std::string_view(key) == "identity_claim" ? tok.identity_claim : tok.groups_claim) =
          std::move(*v);
    }
  }
  if (auto v = ts.duration("leeway", Duration{0}, kMaxTokenLeeway)) {
    tok.leeway = *v;
  }
  ts.finish();
  l.token = std::move(tok);
}

void Loader::load_api_keys(Section& s, Listener& l) {
  std::map<std::string, std::uint32_t, std::less<>> names;
  std::set<std::array<std::uint8_t, 32>> hashes;
  for (const auto& [kt, path] : tables_of(s, "api_key", "[[listener.api_key]]")) {
    Section ks(*this, *kt, path);
    ApiKey key;
    bool ok = true;
    if (auto v = ks.required_string("name")) {
      if (v->empty() || has_control_chars(*v)) {
        error(ks.line_of_key("name"),
              path + ".name: must be non-empty, without control characters");
      } else if (auto [it, inserted] = names.emplace(*v, ks.line()); !inserted) {
        error(ks.line_of_key("name"), path + ".name: " + shown(*v) +
                                          " is already used by the key on line " +
                                          std::to_string(it->second));
      }
      key.name = std::move(*v);
    } else {
      ok = false;
    }
    if (auto v = ks.required_string("sha256")) {
      bool valid = v->size() == 64;
      for (std::size_t i = 0; valid && i < 32; ++i) {
        const int hi = hex_value((*v)[2 * i]);
        const int lo = hex_value((*v)[2 * i + 1]);
        if (hi < 0 || lo < 0) {
          valid = false;
        } else {
          key.sha256[i] = static_cast<std::uint8_t>((hi << 4) | lo);
        }
      }
      if (!valid) {
        error(ks.line_of_key("sha256"),
              path +
                  ".sha256: expected 64 hex digits (the SHA-256 of the key, e.g. from "
                  "`printf %s KEY | sha256sum`)");
        ok = false;
      } else if (!hashes.insert(key.sha256).second) {
        error(ks.line_of_key("sha256"), path + ".sha256: the same key hash is listed twice");
      }
    } else {
      ok = false;
    }
    if (auto v = ks.string_list("groups")) {
      key.groups = std::move(*v);
    }
    ks.finish();
    if (ok) {
      l.api_keys.push_back(std::move(key));
    }
  }
}

void Loader::load_listeners(Section& root, Config& cfg) {
  const auto* n = root.get("listener");
  if (n != nullptr && n->is_table()) {
    error(line_of(*n), "listener: use [[listener]] (an array of tables), not [listener]");
    return;
  }
  for (const auto& [lt, path] : tables_of(root, "listener", "[[listener]]")) {
    Section s(*this, *lt, path);
    Listener l;
    load_listener(s, l, cfg);
    s.finish();
    listener_lines_.push_back(s.line());
    cfg.listeners.push_back(std::move(l));
  }
}

void Loader::load_listener(Section& s, Listener& l, const Config& cfg) {
  const std::string& p = s.path();
  if (auto v = s.required_string("name")) {
    if (!is_simple_name(*v)) {
      error(s.line_of_key("name"),
            p + ".name: " + shown(*v) + " is not a valid name (letters, digits, '_', '-')");
    }
    l.name = std::move(*v);
  }
  bool have_listen = false;
  if (!s.has("listen")) {
    error(s.line(), p + ": missing required key \"listen\"");
    s.get("listen");
  } else if (auto v = s.address("listen")) {
    l.listen = std::move(*v);
    have_listen = true;
  }
  if (auto v = s.string("backend")) {
    l.backend = std::move(*v);
    if (!cfg.backends.contains(l.backend)) {
      error(s.line_of_key("backend"), p + ".backend: unknown backend " + shown(l.backend) +
                                          " (no [backend." + l.backend + "] section)");
    }
  } else if (!s.has("backend")) {
    if (cfg.backends.size() == 1) {
      l.backend = cfg.backends.begin()->first;
    } else if (cfg.backends.size() > 1) {
      error(s.line(), p + ": missing required key \"backend\" (needed when there are several "
                          "backends)");
    }
  }
  if (auto v = s.enumeration("tls", kListenerTls)) {
    l.tls = *v;
  }
  if (auto v = s.path_value("tls_cert")) {
    check_pem(*v, p + ".tls_cert", s.line_of_key("tls_cert"), false);
    l.tls_cert = std::move(*v);
  }
  if (auto v = s.path_value("tls_key")) {
    check_pem(*v, p + ".tls_key", s.line_of_key("tls_key"), true);
    l.tls_key = std::move(*v);
  }
  if (auto v = s.enumeration("tls_min_version", kTlsVersions)) {
    l.tls_min_version = *v;
  }
  std::map<std::string, std::uint32_t> sni_names;
  for (const auto& [st, path] : tables_of(s, "sni", "[[listener.sni]]")) {
    Section ss(*this, *st, path);
    SniCertificate sni;
    if (!ss.has("server_names")) {
      error(ss.line(), path + ": missing required key \"server_names\"");
    }
    if (auto v = ss.string_list("server_names")) {
      if (v->empty()) {
        error(ss.line_of_key("server_names"), path + ".server_names: cannot be empty");
      }
      for (auto& name : *v) {
        if (!is_valid_dns_name(name, /*allow_wildcard=*/true)) {
          error(ss.line_of_key("server_names"),
                path + ".server_names: " + shown(name) + " is not a DNS name");
          continue;
        }
        std::transform(name.begin(), name.end(), name.begin(), [](char c) {
          return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        });
        if (auto [it, inserted] = sni_names.emplace(name, ss.line()); !inserted) {
          error(ss.line_of_key("server_names"), path + ".server_names: " + shown(name) +
                                                    " is already served by the entry on line " +
                                                    std::to_string(it->second));
        }
      }
      sni.server_names = std::move(*v);
    }
    if (!ss.has("cert")) {
      error(ss.line(), path + ": missing required key \"cert\"");
    }
    if (auto v = ss.path_value("cert")) {
      check_pem(*v, path + ".cert", ss.line_of_key("cert"), false);
      sni.cert = std::move(*v);
    }
    if (!ss.has("key")) {
      error(ss.line(), path + ": missing required key \"key\"");
    }
    if (auto v = ss.path_value("key")) {
      check_pem(*v, path + ".key", ss.line_of_key("key"), true);
      sni.key = std::move(*v);
    }
    ss.finish();
    l.sni.push_back(std::move(sni));
  }
  if (auto v = s.path_value("client_ca")) {
    check_pem(*v, p + ".client_ca", s.line_of_key("client_ca"), false);
    l.client_ca = std::move(*v);
  }
  if (auto v = s.enumeration("client_cert", kClientCert)) {
    l.client_cert = *v;
  } else if (s.has("client_ca")) {
    l.client_cert = ClientCertMode::Optional;
  }
  if (auto v = s.enumeration("cert_identity", kCertIdentity)) {
    l.cert_identity = *v;
  }
  if (!s.has("auth")) {
    error(s.line(), p + ": missing required key \"auth\" (e.g. auth = [\"scram\"])");
    s.get("auth");
  } else if (auto v = s.enum_list("auth", kAuthMethods)) {
    if (v->empty()) {
      error(s.line_of_key("auth"), p + ".auth: needs at least one method");
    }
    l.auth = std::move(*v);
  }
  if (auto v = s.path_value("users_file")) {
    const auto line = s.line_of_key("users_file");
    if (auto text = check_file(*v, p + ".users_file", line, /*read=*/true,
                               /*warn_world_readable=*/true)) {
      auto users = std::make_shared<UsersFile>(parse_users_file(*text, v->string(), errors_));
      if (users->users.empty()) {
        warn(line, p + ".users_file: " + shown(v->string()) + " defines no users");
      }
      l.users = std::move(users);
    }
    l.users_file = std::move(*v);
  }
  if (auto v = s.integer("max_connections", 1, kMaxMaxConnections)) {
    l.max_connections = static_cast<std::uint32_t>(*v);
  }
  if (auto v =
          s.duration("startup_timeout", std::chrono::milliseconds(100), std::chrono::minutes(10))) {
    l.startup_timeout = *v;
  }
  if (auto v = s.duration("idle_timeout")) {
    l.idle_timeout = *v;
  }
  if (auto v = s.duration("idle_in_transaction_timeout")) {
    l.idle_in_transaction_timeout = *v;
  }
  if (auto v = s.size("max_startup_packet", kMinStartupPacketLimit, kMaxStartupPacketLimit)) {
    l.limits.max_startup_packet = static_cast<std::uint32_t>(*v);
  }
  if (auto v = s.size("max_message_size", kMinMessageLimit, wire::kMaxMessage)) {
    l.limits.max_message_size = static_cast<std::uint32_t>(*v);
  }
  if (auto v = s.size("max_auth_message", kMinAuthMessageLimit, kMaxAuthMessageLimit)) {
    l.limits.max_auth_message = static_cast<std::uint32_t>(*v);
  }
  if (l.limits.max_auth_message > l.limits.max_message_size) {
    error(s.line_of_key("max_auth_message"),
          p + ": max_auth_message cannot exceed max_message_size");
  }
  if (auto v = s.integer("auth_failure_limit", 0, 1'000'000)) {
    l.auth_failure_limit = static_cast<std::uint32_t>(*v);
  }
  if (auto v = s.duration("auth_failure_window", std::chrono::seconds(1), std::chrono::hours(24))) {
    l.auth_failure_window = *v;
  }
  load_token(s, l);
  load_api_keys(s, l);
  if (auto v = s.path_value("tailscale_socket")) {
    l.tailscale_socket = std::move(*v);
  }

  // ---- Combinations ----
  const bool loopback = have_listen && l.listen.is_loopback();
  if (l.tls != ListenerTls::Disable) {
    if (!s.has("tls_cert") || !s.has("tls_key")) {
      error(s.line_of_key("tls"),
            p + ": tls = \"" + std::string(to_string(l.tls)) + "\" needs tls_cert and tls_key");
    }
  } else {
    for (const auto* key : {"tls_cert", "tls_key", "tls_min_version"}) {
      if (s.has(key)) {
        warn(s.line_of_key(key), p + "." + key + " has no effect with tls = \"disable\"");
      }
    }
    if (s.has("sni")) {
      error(s.line_of_key("sni"), p + ": [[listener.sni]] certificates need tls enabled");
    }
    if (s.has("client_ca")) {
      error(s.line_of_key("client_ca"), p + ": client_ca needs tls enabled");
    }
  }
  if (s.has("client_cert") && !s.has("client_ca")) {
    error(s.line_of_key("client_cert"), p + ": client_cert is set but client_ca is not");
  }
  if (l.client_cert == ClientCertMode::Require && l.tls == ListenerTls::Allow) {
    // A plaintext connection would skip the certificate requirement entirely.
    error(s.line_of_key("client_cert"),
          p + ": client_cert = \"require\" needs tls = \"require\" (with \"allow\" a plaintext "
              "connection would bypass it)");
  }
  if (s.has("cert_identity") && !l.has_auth(AuthMethod::Cert)) {
    warn(s.line_of_key("cert_identity"),
         p + ".cert_identity has no effect without \"cert\" in auth");
  }
  const auto auth_line = s.line_of_key("auth");
  for (std::size_t i = 0; i < l.auth.size(); ++i) {
    const auto m = l.auth[i];
    if (m == AuthMethod::Trust && i + 1 < l.auth.size()) {
      error(auth_line, p + ".auth: \"trust\" accepts every connection, so the methods after it "
                           "would never be used");
    }
  }
  if (l.has_auth(AuthMethod::Passthrough) && l.auth.size() > 1) {
    error(auth_line, p + ".auth: \"passthrough\" cannot be combined with other methods");
  }
  if (l.has_auth(AuthMethod::Trust) && have_listen && !loopback) {
    warn(auth_line, p + ".auth: \"trust\" on non-loopback address " + l.listen.to_string() +
                        " lets anyone connect as any user");
  }
  if (l.has_auth(AuthMethod::Cert) && !s.has("client_ca")) {
    error(auth_line, p + ".auth: \"cert\" needs client_ca");
  }
  if (!l.has_auth(AuthMethod::Cert) && l.client_cert == ClientCertMode::Optional &&
      s.has("client_ca")) {
    warn(s.line_of_key("client_ca"),
         p + ": client certificates are requested (client_ca) but no auth method uses them; add "
             "\"cert\" to auth or set client_cert = \"require\"");
  }
  if (l.tls == ListenerTls::Disable) {
    for (const auto m : {AuthMethod::Token, AuthMethod::ApiKey}) {
      if (l.has_auth(m)) {
        error(auth_line, p + ".auth: \"" + std::string(to_string(m)) +
                             "\" sends a bearer secret in a cleartext password message and is "
                             "not allowed with tls = \"disable\"");
      }
    }
    if (have_listen && !loopback) {
      for (const auto m : {AuthMethod::Scram, AuthMethod::Passthrough}) {
        if (l.has_auth(m)) {
          warn(auth_line, p + ".auth: \"" + std::string(to_string(m)) +
                              "\" over a non-loopback listener with tls = \"disable\": the "
                              "session is not encrypted");
        }
      }
    }
  }
  if (l.has_auth(AuthMethod::Scram) && !s.has("users_file")) {
    error(auth_line, p + ".auth: \"scram\" needs users_file");
  }
  if (!l.has_auth(AuthMethod::Scram) && s.has("users_file")) {
    warn(s.line_of_key("users_file"), p + ".users_file has no effect without \"scram\" in auth");
  }
  if (l.has_auth(AuthMethod::Token) && !s.has("token")) {
    error(auth_line, p + ".auth: \"token\" needs a [listener.token] section");
  }
  if (!l.has_auth(AuthMethod::Token) && s.has("token")) {
    warn(s.line_of_key("token"), p + ".token has no effect without \"token\" in auth");
  }
  if (l.has_auth(AuthMethod::ApiKey) && !s.has("api_key")) {
    error(auth_line, p + ".auth: \"api_key\" needs at least one [[listener.api_key]]");
  }
  if (!l.has_auth(AuthMethod::ApiKey) && s.has("api_key")) {
    warn(s.line_of_key("api_key"), p + ".api_key has no effect without \"api_key\" in auth");
  }
  if (!l.has_auth(AuthMethod::Tailscale) && s.has("tailscale_socket")) {
    warn(s.line_of_key("tailscale_socket"),
         p + ".tailscale_socket has no effect without \"tailscale\" in auth");
  }
}

void Loader::load_grants(Section& root, Config& cfg) {
  for (const auto& [gt, path] : tables_of(root, "grant", "[[grant]]")) {
    Section s(*this, *gt, path);
    Grant g;
    g.line = s.line();
    if (!s.has("identities")) {
      error(s.line(), path + ": missing required key \"identities\"");
    }
    if (auto v = s.string_list("identities", /*allow_single=*/true)) {
      if (v->empty()) {
        error(s.line_of_key("identities"), path + ".identities: cannot be empty");
      }
      for (const auto& id : *v) {
        const bool prefixed_empty = id == "group:" || id == "tag:";
        if (id.empty() || prefixed_empty || has_control_chars(id)) {
          error(s.line_of_key("identities"),
                path + ".identities: " + shown(id) +
                    " is not an identity (\"name\", \"group:NAME\", \"tag:NAME\" or \"*\")");
        }
      }
      g.identities = std::move(*v);
    }
    if (auto v = s.required_string("backend")) {
      if (*v != kAdminConsoleBackend && !cfg.backends.contains(*v)) {
        error(s.line_of_key("backend"), path + ".backend: unknown backend " + shown(*v) +
                                            " (define [backend." + *v +
                                            "], or use \"pgwarden\" for the admin console)");
      }
      g.backend = std::move(*v);
    }
    const bool console = g.backend == kAdminConsoleBackend;
    if (auto v = s.string_list("databases", /*allow_single=*/true)) {
      if (v->empty()) {
        error(s.line_of_key("databases"),
              path + ".databases: cannot be empty (use [\"*\"] for all)");
      }
      for (const auto& db : *v) {
        if (db.empty() || db.size() > kMaxIdentifierBytes || has_control_chars(db)) {
          error(s.line_of_key("databases"),
                path + ".databases: " + shown(db) + " is not a database name");
        }
      }
      g.databases = std::move(*v);
    } else if (!s.has("databases")) {
      if (console) {
        g.databases = {std::string(kAdminConsoleBackend)};
      } else {
        error(s.line(), path + ": missing required key \"databases\" (use [\"*\"] for all)");
      }
    }
    if (auto v = s.enumeration("preset", kPresets)) {
      g.preset = *v;
    }
    if (auto v = s.string_list("rules", /*allow_single=*/true)) {
      for (const auto& r : *v) {
        if (!cfg.rules.contains(r)) {
          error(s.line_of_key("rules"),
                path + ".rules: unknown rule set " + shown(r) + " (no [rules." + r + "] section)");
        }
      }
      g.rules = std::move(*v);
    }
    if (auto v = s.integer("max_connections", 1, kMaxMaxConnections)) {
      g.max_connections = static_cast<std::uint32_t>(*v);
    }
    if (auto v = s.duration("max_session_duration", std::chrono::seconds(1))) {
      g.max_session_duration = *v;
    }
    if (console && std::find(g.identities.begin(), g.identities.end(), "*") != g.identities.end()) {
      warn(s.line_of_key("identities"),
           path + ": grants the admin console to every authenticated identity");
    }
    s.finish();
    cfg.grants.push_back(std::move(g));
  }
}

void Loader::cross_check(const Config& cfg, std::uint32_t root_line) {
  if (cfg.backends.empty()) {
    error(root_line, "no backend is defined; add a [backend.NAME] section");
  }
  if (cfg.listeners.empty()) {
    error(root_line, "no listener is defined; add a [[listener]] section");
  }
  std::map<std::string, std::uint32_t, std::less<>> names;
  std::map<std::pair<std::string, std::uint16_t>, std::uint32_t> addresses;
  for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
    const auto& l = cfg.listeners[i];
    const auto line = listener_lines_[i];
    const std::string path = "listener[" + std::to_string(i) + "]";
    if (!l.name.empty()) {
      if (auto [it, inserted] = names.emplace(l.name, line); !inserted) {
        error(line, path + ": duplicate listener name " + shown(l.name) + " (first on line " +
                        std::to_string(it->second) + ")");
      }
    }
    if (l.listen.port != 0) {
      if (auto [it, inserted] = addresses.emplace(std::pair{l.listen.host, l.listen.port}, line);
          !inserted) {
        error(line, path + ": address " + l.listen.to_string() +
                        " is already used by the listener on line " + std::to_string(it->second));
      }
    }
    const auto* b = cfg.find_backend(l.backend);
    if (b == nullptr) {
      continue;
    }
    const bool passthrough_auth = l.auth.size() == 1 && l.auth[0] == AuthMethod::Passthrough;
    if (b->credentials == Credentials::Passthrough && !passthrough_auth && !l.auth.empty()) {
      error(line,
            path + ": backend " + shown(b->name) +
                " uses credentials = \"passthrough\", which needs auth = [\"passthrough\"] on "
                "this listener");
    }
    if (passthrough_auth && b->credentials != Credentials::Passthrough) {
      error(line, path + ": auth = [\"passthrough\"] needs backend " + shown(b->name) +
                      " to use credentials = \"passthrough\"");
    }
  }
}

LoadResult Loader::run(std::string_view text) {
  LoadResult result;
  toml::table doc;
  try {
    doc = toml::parse(text, file_);
  } catch (const toml::parse_error& e) {
    const auto line = e.source().begin.line;
    error(line == 0 ? 1 : static_cast<std::uint32_t>(line),
          "TOML syntax error: " + std::string(e.description()));
    result.errors = std::move(errors_);
    return result;
  }
  auto cfg = std::make_shared<Config>();
  cfg->source = fs::path(file_);
  Section root(*this, doc, "");
  load_server(root, *cfg);
  load_audit(root, *cfg);
  load_cluster(root, *cfg);
  load_backends(root, *cfg);
  load_rules(root, *cfg);
  load_listeners(root, *cfg);
  load_grants(root, *cfg);
  root.finish();
  cross_check(*cfg, 1);
  if (!cfg->rules.empty()) {
    for (const auto& [name, r] : cfg->rules) {
      const bool used = std::any_of(cfg->grants.begin(), cfg->grants.end(), [&](const Grant& g) {
        return std::find(g.rules.begin(), g.rules.end(), name) != g.rules.end();
      });
      if (!used) {
        warn(1, "rules." + name + " is not used by any grant");
      }
    }
  }
  // Report in file order: easier to read, and deterministic.
  // Diagnostics in the configuration file come first, then those in referenced files; by
  // line within a file, and in discovery order on the same line (a stable order, so that
  // loading twice gives identical output).
  sort_diagnostics(errors_);
  sort_diagnostics(warnings_);
  result.errors = std::move(errors_);
  result.warnings = std::move(warnings_);
  if (result.errors.empty()) {
    result.config = std::move(cfg);
  }
  return result;
}

LoadResult load_text(std::string_view text, const std::string& display_name,
                     const std::filesystem::path& base_dir, const LoadOptions& options,
                     std::optional<mode_t> file_mode) {
  if (text.size() > kMaxConfigFileBytes) {
    LoadResult r;
    r.errors.push_back(Diagnostic{
        display_name, 1,
        "configuration is larger than " + std::to_string(kMaxConfigFileBytes) + " bytes"});
    return r;
  }
  Loader loader(display_name, base_dir, options, file_mode);
  return loader.run(text);
}

}  // namespace

LoadResult load_config_text(std::string_view text, const std::string& display_name,
                            const std::filesystem::path& base_dir, const LoadOptions& options) {
  return load_text(text, display_name, base_dir, options, std::nullopt);
}

LoadResult load_config_file(const std::filesystem::path& path, const LoadOptions& options) {
  LoadResult r;
  const std::string name = path.string();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    r.errors.push_back(Diagnostic{name, 0, std::string("cannot open: ") + std::strerror(errno)});
    return r;
  }
  if (!S_ISREG(st.st_mode)) {
    r.errors.push_back(Diagnostic{name, 0, "not a regular file"});
    return r;
  }
  if (static_cast<std::uint64_t>(st.st_size) > kMaxConfigFileBytes) {
    r.errors.push_back(Diagnostic{
        name, 0, "configuration is larger than " + std::to_string(kMaxConfigFileBytes) + " bytes"});
    return r;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    r.errors.push_back(Diagnostic{name, 0, std::string("cannot read: ") + std::strerror(errno)});
    return r;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::error_code ec;
  auto abs = fs::absolute(path, ec);
  const fs::path base = ec ? path.parent_path() : abs.parent_path();
  return load_text(ss.str(), name, base, options, st.st_mode);
}

}  // namespace pgwarden::config
