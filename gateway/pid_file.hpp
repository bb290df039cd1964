// The master's pid file and `torii -s SIGNAL` (like nginx -s).
#pragma once

#include <string>

#include "conf/config.hpp"

namespace torii::gateway {

// Writes the current pid to `path` (atomically: temp file + rename).
// Returns false (and logs) on failure.
bool write_pid_file(const std::string& path);
// Removes the file if it still holds this process's pid.
void remove_pid_file(const std::string& path);
// `torii -s NAME`: reads the config's pid_file and signals that process.
// Returns the process exit code (0 sent, 1 error), printing the reason.
int signal_master(const conf::Config& config, const std::string& name);

}  // namespace torii::gateway
