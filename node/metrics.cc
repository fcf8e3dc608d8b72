#include "node/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/raft/check.h"

namespace kvstore::node {
namespace {

// Prometheus' number syntax: Go's ParseFloat forms, with +Inf, -Inf and NaN spelt so. Shortest
// round-trip digits, so a counter of 12345678 prints as such, not as 1.23457e+07.
std::string FormatNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  RAFT_CHECK(error == std::errc()) << "cannot format " << value;
  return std::string(buffer, end);
}

// Text format 0.0.4: in HELP, backslash and newline are escaped; in label values also '"'.
std::string Escape(absl::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

bool ValidName(absl::string_view name, bool metric) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// {a="x",b="y"} with `extra` (a histogram's le) last; empty when there are no labels.
std::string LabelText(const Labels& labels, const std::string& extra_name = "",
                      const std::string& extra_value = "") {
  std::string out;
  for (const auto& [name, value] : labels) {
    absl::StrAppend(&out, out.empty() ? "{" : ",", name, "=\"", Escape(value, true), "\"");
  }
  if (!extra_name.empty()) {
    absl::StrAppend(&out, out.empty() ? "{" : ",", extra_name, "=\"", extra_value, "\"");
  }
  if (!out.empty()) out += "}";
  return out;
}

}  // namespace

void Counter::Inc(double by) {
  RAFT_CHECK(by >= 0) << "a counter only goes up (by " << by << ")";
  value_.fetch_add(by, std::memory_order_relaxed);
}

void Gauge::Add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      bucket_counts_(new std::atomic<uint64_t>[upper_bounds_.size()]) {
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    RAFT_CHECK(std::isfinite(upper_bounds_[i])) << "bucket " << i << " is not finite";
    RAFT_CHECK(i == 0 || upper_bounds_[i] > upper_bounds_[i - 1])
        << "bucket bounds must increase (bucket " << i << ")";
    bucket_counts_[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::Observe(double value) {
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    if (value <= upper_bounds_[i]) {
      bucket_counts_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

uint64_t Histogram::cumulative_count(size_t i) const {
  RAFT_CHECK(i < upper_bounds_.size()) << "bucket " << i << " of " << upper_bounds_.size();
  uint64_t total = 0;
  for (size_t b = 0; b <= i; ++b) total += bucket_counts_[b].load(std::memory_order_relaxed);
  return total;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  RAFT_CHECK(start > 0 && factor > 1 && count >= 1)
      << "ExponentialBuckets(" << start << ", " << factor << ", " << count << ")";
  std::vector<double> bounds;
  bounds.reserve(count);
  double bound = start;
  for (int i = 0; i < count; ++i) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

Metrics::Child& Metrics::GetChild(absl::string_view name, absl::string_view help, Type type,
                                  const Labels& labels) {
  RAFT_CHECK(ValidName(name, true)) << "metric name \"" << name << "\"";
  auto [it, inserted] = families_.try_emplace(std::string(name));
  Family& family = it->second;
  std::vector<std::string> names, values;
  for (const auto& [label, value] : labels) {
    RAFT_CHECK(ValidName(label, false) && label.rfind("__", 0) != 0 && label != "le")
        << "label name \"" << label << "\" of " << name;
    names.push_back(label);
    values.push_back(value);
  }
  if (inserted) {
    family.help = std::string(help);
    family.type = type;
    family.label_names = names;
  }
  RAFT_CHECK(family.type == type) << "metric " << name << " is registered as another type";
  RAFT_CHECK(family.label_names == names) << "metric " << name << " has other label names";
  Child& child = family.children[values];
  child.labels = labels;
  return child;
}

Counter& Metrics::GetCounter(absl::string_view name, absl::string_view help, const Labels& labels) {
  Child& child = GetChild(name, help, Type::kCounter, labels);
  if (child.counter == nullptr) child.counter = std::make_unique<Counter>();
  return *child.counter;
}

Gauge& Metrics::GetGauge(absl::string_view name, absl::string_view help, const Labels& labels) {
  Child& child = GetChild(name, help, Type::kGauge, labels);
  if (child.gauge == nullptr) child.gauge = std::make_unique<Gauge>();
  return *child.gauge;
}

Histogram& Metrics::GetHistogram(absl::string_view name, absl::string_view help,
                                 const std::vector<double>& upper_bounds, const Labels& labels) {
  Child& child = GetChild(name, help, Type::kHistogram, labels);
  if (child.histogram == nullptr) child.histogram = std::make_unique<Histogram>(upper_bounds);
  RAFT_CHECK(child.histogram->upper_bounds() == upper_bounds)
      << "histogram " << name << " asked for with other buckets";
  return *child.histogram;
}

void Metrics::AddCollector(std::function<void()> collect) {
  collectors_.push_back(std::move(collect));
}

std::string Metrics::Render() {
  for (const auto& collect : collectors_) collect();
  std::string out;
  for (const auto& [name, family] : families_) {
    if (family.children.empty()) continue;
    const char* type = family.type == Type::kCounter ? "counter"
                       : family.type == Type::kGauge ? "gauge"
                                                     : "histogram";
    absl::StrAppend(&out, "# HELP ", name, " ", Escape(family.help, false), "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", type, "\n");
    for (const auto& [values, child] : family.children) {
      switch (family.type) {
        case Type::kCounter:
          absl::StrAppend(&out, name, LabelText(child.labels), " ",
                          FormatNumber(child.counter->value()), "\n");
          break;
        case Type::kGauge:
          absl::StrAppend(&out, name, LabelText(child.labels), " ",
                          FormatNumber(child.gauge->value()), "\n");
          break;
        case Type::kHistogram: {
          const Histogram& h = *child.histogram;
          // Read the count first: observations racing the render may make a bucket exceed an
          // earlier one's snapshot, never the +Inf bucket fall below the finite ones.
          const uint64_t count = h.count();
          uint64_t previous = 0;
          for (size_t i = 0; i < h.upper_bounds().size(); ++i) {
            const uint64_t cumulative = std::min(count, std::max(previous, h.cumulative_count(i)));
            previous = cumulative;
            absl::StrAppend(&out, name, "_bucket",
                            LabelText(child.labels, "le", FormatNumber(h.upper_bounds()[i])), " ",
                            cumulative, "\n");
          }
          absl::StrAppend(&out, name, "_bucket", LabelText(child.labels, "le", "+Inf"), " ", count,
                          "\n");
          absl::StrAppend(&out, name, "_sum", LabelText(child.labels), " ", FormatNumber(h.sum()),
                          "\n");
          absl::StrAppend(&out, name, "_count", LabelText(child.labels), " ", count, "\n");
          break;
        }
      }
    }
  }
  return out;
}

namespace {

// Seconds since the epoch when this process started: its start time in clock ticks after boot
// (/proc/self/stat field 22) plus the boot time (/proc/stat btime). 0 if either is unreadable.
double ProcessStartTimeSeconds() {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
  uint64_t start_ticks = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start_ticks)) return 0;
  std::ifstream proc_stat("/proc/stat");
  std::string line;
  uint64_t boot_time = 0;
  while (std::getline(proc_stat, line)) {
    if (line.rfind("btime ", 0) == 0 && absl::SimpleAtoi(line.substr(6), &boot_time)) break;
  }
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  if (boot_time == 0 || ticks_per_second <= 0) return 0;
  return static_cast<double>(boot_time) +
         static_cast<double>(start_ticks) / static_cast<double>(ticks_per_second);
}

double ResidentMemoryBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size_pages = 0, resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) return 0;
  return static_cast<double>(resident_pages) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

}  // namespace

void AddProcessMetrics(Metrics& metrics) {
  Gauge& start = metrics.GetGauge("process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.");
  Gauge& resident =
      metrics.GetGauge("process_resident_memory_bytes", "Resident memory size in bytes.");
  start.Set(ProcessStartTimeSeconds());
  metrics.AddCollector([&resident] { resident.Set(ResidentMemoryBytes()); });
}

}  // namespace kvstore::node
