#include "metrics/exposition.hpp"

#include <dirent.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>

namespace torii::metrics {

namespace {

prometheus::MetricType prom_type(SeriesKind k) {
  switch (k) {
    case SeriesKind::kCounter:
      return prometheus::MetricType::Counter;
    case SeriesKind::kGauge:
      return prometheus::MetricType::Gauge;
    case SeriesKind::kHistogram:
      return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

// VmRSS from /proc/<pid>/statm (pages), in bytes; -1 when unreadable.
double rss_bytes(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return -1;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double open_fds(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd", static_cast<int>(pid));
  DIR* d = opendir(path);
  if (d == nullptr) return -1;
  double n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

}  // namespace

std::vector<prometheus::MetricFamily> SegmentCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out(static_cast<size_t>(Family::kCount));
  for (size_t f = 0; f < out.size(); ++f) {
    const FamilyInfo& info = family_info(static_cast<Family>(f));
    out[f].name = info.name;
    out[f].help = info.help;
    out[f].type = prom_type(info.kind);
  }
  const auto buckets = latency_buckets_us();
  for (const StatsRegistry::Series& s : registry_.series()) {
    const FamilyInfo& info = family_info(s.family);
    prometheus::ClientMetric m;
    for (size_t i = 0; i < info.labels.size(); ++i)
      m.label.push_back({info.labels[i], s.labels[i]});
    switch (info.kind) {
      case SeriesKind::kCounter: {
        const uint64_t v = segment_.sum(s.cell);
        // A series appears once it has counted something: label combinations
        // that never happen (a route never answering 1xx) stay out.
        if (v == 0) continue;
        m.counter.value = static_cast<double>(v);
        break;
      }
      case SeriesKind::kGauge:
        // Workers add and subtract; the sum is a signed value in two's complement.
        m.gauge.value = static_cast<double>(static_cast<int64_t>(segment_.sum(s.cell)));
        break;
      case SeriesKind::kHistogram: {
        uint64_t cumulative = 0;
        for (size_t b = 0; b < buckets.size(); ++b) {
          cumulative += segment_.sum(s.cell + static_cast<uint32_t>(b));
          m.histogram.bucket.push_back({cumulative, static_cast<double>(buckets[b]) / 1e6});
        }
        cumulative += segment_.sum(s.cell + static_cast<uint32_t>(buckets.size()));
        if (cumulative == 0) continue;
        m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum =
            static_cast<double>(segment_.sum(s.cell + static_cast<uint32_t>(buckets.size() + 1))) /
            1e6;
        break;
      }
    }
    out[static_cast<size_t>(s.family)].metric.push_back(std::move(m));
  }
  return out;
}

MasterMetrics::MasterMetrics(std::string version, unsigned workers)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("torii_build_info")
      .Help("Always 1; the labels say which build runs.")
      .Register(*registry_)
      .Add({{"version", version}})
      .Set(1);
  restarts_ = &prometheus::BuildCounter()
                   .Name("torii_worker_restarts_total")
                   .Help("Workers that exited unexpectedly and were respawned.")
                   .Register(*registry_)
                   .Add({});
  auto& reloads = prometheus::BuildCounter()
                      .Name("torii_config_reloads_total")
                      .Help("Configuration reloads, by result.")
                      .Register(*registry_);
  reload_ok_ = &reloads.Add({{"result", "success"}});
  reload_failed_ = &reloads.Add({{"result", "failure"}});
  last_reload_ = &prometheus::BuildGauge()
                      .Name("torii_config_last_reload_success_timestamp_seconds")
                      .Help("When the running configuration was loaded (Unix time).")
                      .Register(*registry_)
                      .Add({});
  workers_running_ = &prometheus::BuildGauge()
                          .Name("torii_workers")
                          .Help("Worker processes, by state.")
                          .Register(*registry_)
                          .Add({{"state", "running"}});
  prometheus::BuildGauge()
      .Name("torii_workers_configured")
      .Help("Worker processes the configuration asks for.")
      .Register(*registry_)
      .Add({})
      .Set(workers);
  rss_ = &prometheus::BuildGauge()
              .Name("torii_process_resident_memory_bytes")
              .Help("Resident memory of the master and each worker process.")
              .Register(*registry_);
  fds_ = &prometheus::BuildGauge()
              .Name("torii_process_open_fds")
              .Help("Open file descriptors of the master and each worker process.")
              .Register(*registry_);
}

void MasterMetrics::reload(bool ok, double unix_time) {
  if (ok) {
    reload_ok_->Increment();
    last_reload_->Set(unix_time);
  } else {
    reload_failed_->Increment();
  }
}

void MasterMetrics::sample_processes(const std::vector<pid_t>& worker_pids) {
  auto sample = [this](pid_t pid, const std::string& process, const std::string& worker) {
    const prometheus::Labels labels = {{"process", process}, {"worker", worker}};
    const double rss = rss_bytes(pid);
    const double fds = open_fds(pid);
    if (rss >= 0) rss_->Add(labels).Set(rss);
    if (fds >= 0) fds_->Add(labels).Set(fds);
  };
  sample(getpid(), "master", "");
  double running = 0;
  for (size_t i = 0; i < worker_pids.size(); ++i) {
    const prometheus::Labels labels = {{"process", "worker"}, {"worker", std::to_string(i)}};
    if (worker_pids[i] == 0) {
      // No process behind this slot right now: drop its stale samples.
      rss_->Remove(&rss_->Add(labels));
      fds_->Remove(&fds_->Add(labels));
      continue;
    }
    ++running;
    sample(worker_pids[i], "worker", std::to_string(i));
  }
  workers_running_->Set(running);
}

std::string render_metrics(MasterMetrics& master, const SegmentCollector& segment) {
  std::vector<prometheus::MetricFamily> families = master.registry().Collect();
  for (auto& f : segment.Collect()) families.push_back(std::move(f));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace torii::metrics
