#include "audit/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>
#include <system_error>
#include <utility>

namespace pgwarden::audit {
namespace {

constexpr mode_t kAuditFileMode = 0600;

std::string system_error_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// Opens `path` for appending and checks what it is. Returns the descriptor or the reason.
std::expected<int, std::string> open_append(const std::filesystem::path& path) {
  // O_NONBLOCK so that a FIFO at the path cannot make open() wait for a reader; it is cleared
  // again below for the regular file or device we accept.
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
             kAuditFileMode);
  if (fd < 0) {
    return std::unexpected("cannot open audit log " + path.string() + ": " +
                           system_error_text(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return std::unexpected("cannot stat audit log " + path.string() + ": " +
                           system_error_text(err));
  }
  if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
    ::close(fd);
    return std::unexpected("audit log " + path.string() +
                           " is not a regular file or character device");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int err = errno;
    ::close(fd);
    return std::unexpected("cannot configure audit log " + path.string() + ": " +
                           system_error_text(err));
  }
  return fd;
}

// Writes all of `data`, retrying on EINTR and short writes. Returns the bytes written.
std::size_t write_all(int fd, std::string_view data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    if (n == 0) {
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  return done;
}

}  // namespace

AuditLog::AuditLog(std::filesystem::path path, int fd, bool owned)
    : path_(std::move(path)), fd_(fd), owned_(owned) {}

AuditLog::~AuditLog() {
  if (owned_ && fd_ >= 0) {
    ::close(fd_);
  }
}

std::expected<std::unique_ptr<AuditLog>, std::string> AuditLog::open(
    const std::filesystem::path& path) {
  if (path.native() == kStdoutPath) {
    return std::unique_ptr<AuditLog>(new AuditLog(path, STDOUT_FILENO, false));
  }
  auto fd = open_append(path);
  if (!fd) {
    return std::unexpected(std::move(fd.error()));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, *fd, true));
}

void AuditLog::write(const nlohmann::json& event) noexcept {
  try {
    // Newline first when the previous line was torn, so this event parses on its own line.
    std::string line = "\n";
    // replace: a client's invalid UTF-8 becomes U+FFFD instead of an exception or bad JSON.
    line += event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += '\n';
    const std::lock_guard lock(mutex_);
    const std::string_view out = torn_ ? std::string_view(line) : std::string_view(line).substr(1);
    const std::size_t written = write_all(fd_, out);
    if (written != out.size()) {
      torn_ = written != 0 || torn_;
      errors_.fetch_add(1, std::memory_order_relaxed);
    } else {
      torn_ = false;
    }
  } catch (...) {
    // Allocation failure or a mutex error: the event is lost, but the session goes on.
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::expected<void, std::string> AuditLog::reopen() {
  if (!owned_) {
    return {};
  }
  auto fd = open_append(path_);
  if (!fd) {
    return std::unexpected(std::move(fd.error()));
  }
  int old = *fd;
  {
    const std::lock_guard lock(mutex_);
    std::swap(fd_, old);
    torn_ = false;
  }
  ::close(old);
  return {};
}

}  // namespace pgwarden::audit
