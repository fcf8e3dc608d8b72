#ifndef KVSTORE_NODE_METRICS_H_
#define KVSTORE_NODE_METRICS_H_

// A metrics registry with Prometheus' text exposition format 0.0.4, and no third-party library.
//
// Three kinds, as Prometheus' client libraries have them: a Counter only goes up, a Gauge is set,
// a Histogram counts observations into cumulative buckets with a sum and a count. A metric is a
// family (name, help, type) and one child per set of label values; the family is created by the
// first Get* of its name, and a name is one type for good (asking for it as another type is a
// bug and aborts).
//
// Threads. Families and children are created, and Render runs, on one thread (the node's kj
// loop). Values are atomics: a child created before another thread starts may be updated from
// that thread (the WAL's fsync thread observes its fsync durations) while the loop renders.
//
// Collectors: gauges derived from state that another object owns (the Raft status, the backend's
// size) are set by a collector that Render calls first, so a scrape sees them fresh and nothing
// has to update them on every change.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace kvstore::node {

// Label names and values of one child, e.g. {{"To", "8e9e05c52164694d"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(double by = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double by);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `upper_bounds`: increasing, finite; the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Observations <= upper_bounds()[i] (cumulative), i < upper_bounds().size().
  uint64_t cumulative_count(size_t i) const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;  // per bucket, not cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Prometheus' client_golang ExponentialBuckets: count bounds, start * factor^i.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

class Metrics {
 public:
  Metrics() = default;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The child of family `name` with `labels` (created on first use). References stay valid for
  // the registry's lifetime. A family keeps the help and label names of its first Get.
  Counter& GetCounter(absl::string_view name, absl::string_view help, const Labels& labels = {});
  Gauge& GetGauge(absl::string_view name, absl::string_view help, const Labels& labels = {});
  Histogram& GetHistogram(absl::string_view name, absl::string_view help,
                          const std::vector<double>& upper_bounds, const Labels& labels = {});

  // Called by every Render before it reads values, in the order added.
  void AddCollector(std::function<void()> collect);

  // Every family, sorted by name, children sorted by label values, in text format 0.0.4.
  std::string Render();

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Child {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    std::string help;
    Type type;
    std::vector<std::string> label_names;
    std::map<std::vector<std::string>, Child> children;  // by label values
  };
  Child& GetChild(absl::string_view name, absl::string_view help, Type type, const Labels& labels);

  std::map<std::string, Family> families_;
  std::vector<std::function<void()>> collectors_;
};

// The content type of Render's output.
inline constexpr char kPrometheusTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Process metrics as client_golang's process collector names them: process_start_time_seconds
// (from /proc/self/stat and the boot time) and process_resident_memory_bytes (from
// /proc/self/statm), refreshed at every Render.
void AddProcessMetrics(Metrics& metrics);

}  // namespace kvstore::node

#endif  // KVSTORE_NODE_METRICS_H_
