#include "gateway/pid_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/log.hpp"

namespace torii::gateway {

bool write_pid_file(const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << getpid() << '\n';
    if (!out) {
      LogLine(LogLevel::kError, "cannot write the pid file")
          .kv("path", tmp)
          .kv("error", std::strerror(errno));
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    LogLine(LogLevel::kError, "cannot write the pid file")
        .kv("path", path)
        .kv("error", std::strerror(errno));
    return false;
  }
  return true;
}

void remove_pid_file(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (in >> pid && pid == static_cast<long>(getpid())) std::remove(path.c_str());
}

int signal_master(const conf::Config& config, const std::string& name) {
  int sig = 0;
  if (name == "reload") {
    sig = SIGHUP;
  } else if (name == "stop") {
    sig = SIGTERM;
  } else if (name == "quit") {
    sig = SIGQUIT;
  } else if (name == "reopen") {
    sig = SIGUSR1;
  } else {
    std::fprintf(stderr, "torii: unknown signal '%s' (expected reload, stop, quit or reopen)\n",
                 name.c_str());
    return 1;
  }
  if (config.pid_file.empty()) {
    std::fprintf(stderr, "torii: %s has no \"pid_file\": cannot find the running master\n",
                 config.source_path.c_str());
    return 1;
  }
  std::ifstream in(config.pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 1) {
    std::fprintf(stderr, "torii: cannot read a pid from %s\n", config.pid_file.c_str());
    return 1;
  }
  if (kill(static_cast<pid_t>(pid), sig) != 0) {
    std::fprintf(stderr, "torii: cannot signal pid %ld: %s\n", pid, std::strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace torii::gateway
