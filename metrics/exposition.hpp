// /metrics: the shared-memory series summed over every worker slot, plus
// the master's own metrics, rendered in the Prometheus text format through
// prometheus-cpp's core library (Registry, MetricFamily, TextSerializer).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "metrics/stats.hpp"

namespace torii::metrics {

// Turns the segment into metric families (a prometheus-cpp Collectable).
class SegmentCollector final : public prometheus::Collectable {
 public:
  SegmentCollector(const StatsSegment& segment, const StatsRegistry& registry)
      : segment_(segment), registry_(registry) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const StatsSegment& segment_;
  const StatsRegistry& registry_;
};

// Metrics only the master knows: build info, worker restarts, reloads,
// process memory and descriptors.
class MasterMetrics {
 public:
  MasterMetrics(std::string version, unsigned workers);

  void worker_restarted() { restarts_->Increment(); }
  void reload(bool ok, double unix_time);
  // Reads RSS and open fds of the master and every live worker (procfs).
  // `worker_pids[i]` is worker i's pid, 0 when none runs.
  void sample_processes(const std::vector<pid_t>& worker_pids);
  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* restarts_;
  prometheus::Counter* reload_ok_;
  prometheus::Counter* reload_failed_;
  prometheus::Gauge* last_reload_;
  prometheus::Gauge* workers_running_;
  prometheus::Family<prometheus::Gauge>* rss_;
  prometheus::Family<prometheus::Gauge>* fds_;
};

// The whole exposition text.
std::string render_metrics(MasterMetrics& master, const SegmentCollector& segment);

}  // namespace torii::metrics
