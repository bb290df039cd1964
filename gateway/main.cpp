// torii: command line entry point.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.hpp"
#include "conf/config.hpp"
#include "gateway/config_resources.hpp"
#include "gateway/master.hpp"
#include "gateway/pid_file.hpp"
#include "gateway/tls_context.hpp"
#include "gateway/version.hpp"

namespace {

constexpr const char* kUsage =
    "Usage: torii [-t] -c FILE\n"
    "       torii -s reload|stop|quit|reopen -c FILE\n"
    "       torii --version | --help\n"
    "\n"
    "Torii is a multi-process HTTP/1.1 reverse proxy and API gateway.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE  configuration file (JSON), default conf/torii.json\n"
    "  -t, --test         validate the configuration and exit (0 = valid, 1 = invalid)\n"
    "  -s SIGNAL          signal the running master (pid from the config's pid_file):\n"
    "                     reload (HUP), stop (TERM, graceful), quit (QUIT, at once),\n"
    "                     reopen (USR1, log files)\n"
    "  -v, --version      print the version and exit\n"
    "  -h, --help         print this help and exit\n"
    "\n"
    "Signals to the master: HUP reloads the config, TERM drains and exits, INT/QUIT\n"
    "stop at once, USR1 reopens logs, USR2 upgrades the binary (see docs/OPERATIONS.md).\n"
    "Logs go to stderr in logfmt. See docs/CONFIG.md for the configuration.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "conf/torii.json";
  bool test_only = false;
  std::string signal_name;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "-v" || a == "--version") {
      std::printf("torii %s\n", torii::kVersion);
      return 0;
    }
    if (a == "-t" || a == "--test") {
      test_only = true;
    } else if (a == "-s" && i + 1 < argc) {
      signal_name = argv[++i];
    } else if ((a == "-c" || a == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else {
      std::fprintf(stderr, "torii: unknown argument '%s'\n\n%s", argv[i], kUsage);
      return 2;
    }
  }

  torii::conf::Config config;
  try {
    config = torii::conf::load_config_file(config_path);
    if (test_only) {
      // Certificates and keys are loaded and checked too (the master does
      // the same at start-up and on reload).
      auto keys = std::make_shared<torii::gateway::TicketKeys>();
      keys->rotate(torii::gateway::TicketKeys::generate());
      const torii::gateway::ConfigResources resources =
          torii::gateway::load_config_resources(config, keys);
      for (const auto& ctx : resources.tls.listeners) {
        if (!ctx) continue;
        for (const std::string& w : ctx->warnings())
          std::fprintf(stderr, "warning: %s\n", w.c_str());
      }
    }
  } catch (const torii::conf::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  if (test_only) {
    std::printf("torii: configuration %s is valid\n", config_path.c_str());
    return 0;
  }
  if (!signal_name.empty()) return torii::gateway::signal_master(config, signal_name);
  torii::LogLevel level = torii::LogLevel::kInfo;
  torii::parse_log_level(config.log_level, level);
  torii::log::set_level(level);
  torii::LogLine(torii::LogLevel::kInfo, "starting")
      .kv("version", torii::kVersion)
      .kv("config", config_path)
      .kv("workers", config.workers);
  // A master exec'd by a binary upgrade starts with every signal blocked.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  torii::gateway::Master master(std::move(config));
  // The path as it is now: a binary upgrade execs whatever file is there then.
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  master.set_command_line(n > 0 ? std::string(exe, static_cast<size_t>(n)) : std::string(argv[0]),
                          std::vector<std::string>(argv, argv + argc));
  return master.run();
}
