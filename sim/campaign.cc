#include "sim/campaign.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/raft/rand.h"
#include "google/protobuf/util/json_util.h"

namespace kvstore::sim {

std::optional<uint64_t> Shard::First(uint64_t from) const {
  const uint64_t delta = (index + count - from % count) % count;
  if (from > std::numeric_limits<uint64_t>::max() - delta) return std::nullopt;
  return from + delta;
}

std::string Shard::ToString() const { return absl::StrCat(index, "/", count); }

uint64_t SeedsInShard(uint64_t first, uint64_t count, const Shard& shard) {
  if (count == 0) return 0;
  // As in SeedSequence, a range running past the end of the seed space ends just below it.
  const uint64_t last = count > std::numeric_limits<uint64_t>::max() - first
                            ? std::numeric_limits<uint64_t>::max() - 1
                            : first + (count - 1);
  const std::optional<uint64_t> start = shard.First(first);
  if (!start.has_value() || *start > last) return 0;
  return (last - *start) / shard.count + 1;
}

absl::StatusOr<Shard> ParseShard(absl::string_view text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, '/');
  Shard shard;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &shard.index) ||
      !absl::SimpleAtoi(parts[1], &shard.count) || shard.count == 0 || shard.index >= shard.count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard '", text, "' is not I/N with 0 <= I < N (e.g. 0/4 ... 3/4)"));
  }
  return shard;
}

SeedSequence::SeedSequence(uint64_t first, std::optional<uint64_t> count, Shard shard)
    : next_(shard.First(first)), step_(shard.count) {
  if (count.has_value()) {
    // A range running past the end of the seed space ends there.
    end_ = *count > std::numeric_limits<uint64_t>::max() - first
               ? std::numeric_limits<uint64_t>::max()
               : first + *count;
  }
}

std::optional<uint64_t> SeedSequence::Next() {
  if (!next_.has_value() || (end_.has_value() && *next_ >= *end_)) return std::nullopt;
  const uint64_t seed = *next_;
  if (seed > std::numeric_limits<uint64_t>::max() - step_) {
    next_.reset();
  } else {
    next_ = seed + step_;
  }
  return seed;
}

absl::StatusOr<std::vector<int>> ParseNodeCounts(absl::string_view text) {
  std::vector<int> counts;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int nodes = 0;
    if (!absl::SimpleAtoi(part, &nodes) || nodes < 1 || nodes > 9) {
      return absl::InvalidArgumentError(
          absl::StrCat("node count '", part, "' in '", text, "' is not a number in [1, 9]"));
    }
    counts.push_back(nodes);
  }
  return counts;
}

int NodesForSeed(uint64_t seed, const std::vector<int>& choices) {
  if (choices.size() == 1) return choices[0];
  return choices[raft::SplitMix64::Mix(seed ^ 0x6E6F646573ull) % choices.size()];
}

std::string ReplayCommand(uint64_t seed, int nodes, int64_t duration_ms) {
  return absl::StrCat("sim replay --seed=", seed, " --nodes=", nodes,
                      " --duration-ms=", duration_ms);
}

namespace {

pb::NodeCountFigures* FiguresFor(int nodes, pb::CampaignSummary* summary) {
  auto* figures = summary->mutable_by_nodes();
  for (pb::NodeCountFigures& f : *figures) {
    if (f.nodes() == nodes) return &f;
  }
  pb::NodeCountFigures* added = figures->Add();
  added->set_nodes(nodes);
  std::sort(figures->begin(), figures->end(),
            [](const pb::NodeCountFigures& a, const pb::NodeCountFigures& b) {
              return a.nodes() < b.nodes();
            });
  for (pb::NodeCountFigures& f : *figures) {
    if (f.nodes() == nodes) return &f;
  }
  return added;  // unreachable: it was just added
}

void AddFigures(const pb::NodeCountFigures& from, pb::CampaignSummary* to) {
  pb::NodeCountFigures* figures = FiguresFor(from.nodes(), to);
  figures->set_seeds(figures->seeds() + from.seeds());
  figures->set_failed(figures->failed() + from.failed());
  figures->mutable_cpu_ms()->MergeFrom(from.cpu_ms());
}

std::string SeedsDescription(const pb::CampaignSummary& s) {
  std::string text = "seeds ";
  if (s.seed_count() > 0) {
    absl::StrAppend(&text, s.first_seed(), "..", s.first_seed() + (s.seed_count() - 1));
    if (s.minutes() > 0) absl::StrAppend(&text, " (at most ", s.minutes(), " minutes)");
  } else {
    absl::StrAppend(&text, "from ", s.first_seed(), " for ", s.minutes(), " minutes");
  }
  if (s.shard_count() > 1) {
    absl::StrAppend(&text, ", shard ", s.shard_index(), "/", s.shard_count(), " (seeds s with s % ",
                    s.shard_count(), " == ", s.shard_index(), ")");
  }
  std::vector<std::string> nodes;
  for (int n : s.nodes()) nodes.push_back(absl::StrCat(n));
  absl::StrAppend(&text, ", ", absl::StrJoin(nodes, " or "), " nodes, ", s.duration_ms(),
                  " ms of faults per seed");
  return text;
}

std::string TableRow(const std::string& label, uint64_t seeds, uint64_t failed,
                     std::vector<uint32_t> cpu_ms) {
  if (cpu_ms.empty()) {
    return absl::StrFormat("%-6s %7d %7d %7d %10s %8s %8s\n", label, seeds, seeds - failed, failed,
                           "-", "-", "-");
  }
  const uint32_t max = *std::max_element(cpu_ms.begin(), cpu_ms.end());
  return absl::StrFormat("%-6s %7d %7d %7d %7d ms %5d ms %5d ms\n", label, seeds, seeds - failed,
                         failed, Percentile(cpu_ms, 0.5), Percentile(cpu_ms, 0.9), max);
}

}  // namespace

uint32_t Percentile(std::vector<uint32_t> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p * static_cast<double>(values.size()));
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

void RecordSeed(uint64_t seed, int nodes, bool passed, const std::vector<std::string>& failures,
                double cpu_seconds, int64_t duration_ms, pb::CampaignSummary* summary) {
  summary->set_seeds_run(summary->seeds_run() + 1);
  summary->set_last_seed_run(seed);
  summary->set_cpu_seconds(summary->cpu_seconds() + cpu_seconds);
  pb::NodeCountFigures* figures = FiguresFor(nodes, summary);
  figures->set_seeds(figures->seeds() + 1);
  figures->add_cpu_ms(static_cast<uint32_t>(std::lround(std::max(0.0, cpu_seconds) * 1000)));
  if (passed) {
    summary->set_seeds_passed(summary->seeds_passed() + 1);
    return;
  }
  figures->set_failed(figures->failed() + 1);
  pb::CampaignFailure* failure = summary->add_failures();
  failure->set_seed(seed);
  failure->set_nodes(nodes);
  failure->set_replay(ReplayCommand(seed, nodes, duration_ms));
  for (const std::string& f : failures) failure->add_failures(f);
}

std::string FormatReport(const pb::CampaignSummary& s) {
  std::string out = absl::StrCat("fuzz campaign: ", SeedsDescription(s), "\n");
  const uint64_t failed = s.seeds_run() - s.seeds_passed();
  absl::StrAppendFormat(
      &out, "%d seeds run in %.1f s (%.2f seeds/s, %.1f s of CPU): %d passed, %d failed%s\n",
      s.seeds_run(), s.wall_seconds(),
      s.wall_seconds() > 0 ? static_cast<double>(s.seeds_run()) / s.wall_seconds() : 0.0,
      s.cpu_seconds(), s.seeds_passed(), failed,
      s.interrupted() ? " (interrupted before its bound)" : "");
  absl::StrAppendFormat(&out, "%-6s %7s %7s %7s %10s %8s %8s\n", "nodes", "seeds", "passed",
                        "failed", "cpu median", "p90", "max");
  std::vector<uint32_t> all_cpu;
  for (const pb::NodeCountFigures& f : s.by_nodes()) {
    std::vector<uint32_t> cpu(f.cpu_ms().begin(), f.cpu_ms().end());
    all_cpu.insert(all_cpu.end(), cpu.begin(), cpu.end());
    absl::StrAppend(&out, TableRow(absl::StrCat(f.nodes()), f.seeds(), f.failed(), cpu));
  }
  if (s.by_nodes_size() != 1)
    absl::StrAppend(&out, TableRow("all", s.seeds_run(), failed, all_cpu));
  if (s.search_steps_budget() > 0) {
    absl::StrAppend(&out, "linearizability: at most ", s.most_search_steps(),
                    " search steps (seed ", s.most_search_steps_seed(), ") of a budget of ",
                    s.search_steps_budget(), "\n");
  }
  if (s.calm_windows() > 0) {
    absl::StrAppendFormat(
        &out,
        "availability: %d calm windows (healed faults), %d settled on a stable leader after "
        "%.2f elections on average, at most %d (seed %d); %d leader transfers judged, %d "
        "proposals refused during one\n",
        s.calm_windows(), s.calm_windows_settled(),
        s.calm_windows_settled() > 0 ? static_cast<double>(s.elections_after_heal()) /
                                           static_cast<double>(s.calm_windows_settled())
                                     : 0.0,
        s.most_elections_after_heal(), s.most_elections_after_heal_seed(), s.transfers_checked(),
        s.proposals_refused_in_transfer());
  }
  if (s.probe_hits().empty()) {
    absl::StrAppend(&out, "probes: none reported by the simulator\n");
  } else {
    // The list's order (by layer), then any name the list lacks (a summary of another build).
    std::map<std::string, uint64_t> hits(s.probe_hits().begin(), s.probe_hits().end());
    std::vector<std::pair<std::string, uint64_t>> rows;
    for (const probe::Info& info : probe::All()) {
      auto it = hits.find(std::string(info.name));
      rows.emplace_back(std::string(info.name), it == hits.end() ? 0 : it->second);
      if (it != hits.end()) hits.erase(it);
    }
    for (const auto& [name, count] : hits) rows.emplace_back(name, count);
    size_t hit = 0;
    for (const auto& row : rows) hit += row.second > 0 ? 1 : 0;
    absl::StrAppend(&out, "probes: ", hit, " of ", rows.size(), " hit\n");
    for (const auto& [name, count] : rows) {
      absl::StrAppendFormat(&out, "probe %-44s %10d\n", name, count);
    }
  }
  for (const pb::CampaignFailure& f : s.failures()) {
    absl::StrAppend(&out, "FAILED seed ", f.seed(), " (", f.nodes(), " nodes): ",
                    f.failures().empty() ? std::string("(no failure text)") : f.failures(0),
                    f.failures_size() > 1 ? absl::StrCat(" (and ", f.failures_size() - 1, " more)")
                                          : std::string(),
                    "\nreplay: ", f.replay(), "\n");
  }
  return out;
}

void AddAvailability(const AvailabilityFigures& figures, uint64_t seed,
                     pb::CampaignSummary* summary) {
  summary->set_calm_windows(summary->calm_windows() + figures.calm_windows);
  summary->set_calm_windows_settled(summary->calm_windows_settled() + figures.settled);
  summary->set_elections_after_heal(summary->elections_after_heal() + figures.elections_after_heal);
  if (figures.most_elections_after_heal > summary->most_elections_after_heal()) {
    summary->set_most_elections_after_heal(figures.most_elections_after_heal);
    summary->set_most_elections_after_heal_seed(seed);
  }
  summary->set_transfers_checked(summary->transfers_checked() + figures.transfers_checked);
  summary->set_proposals_refused_in_transfer(summary->proposals_refused_in_transfer() +
                                             figures.proposals_refused_in_transfer);
}

void AddProbeHits(const probe::Counts& hits, pb::CampaignSummary* summary) {
  auto& map = *summary->mutable_probe_hits();
  for (size_t i = 0; i < probe::kCount; ++i) map[std::string(probe::All()[i].name)] += hits[i];
}

absl::StatusOr<std::map<std::string, std::string>> ParseExpectedRareProbes(
    absl::string_view text, absl::string_view origin) {
  std::map<std::string, std::string> listed;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    const size_t space = line.find_first_of(" \t");
    const std::string name(line.substr(0, space));
    const absl::string_view reason =
        space == absl::string_view::npos ? "" : absl::StripAsciiWhitespace(line.substr(space));
    const auto where = [&] { return absl::StrCat(origin, ":", line_number, ": "); };
    bool known = false;
    for (const probe::Info& info : probe::All()) known = known || info.name == name;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "'", name, "' is no code probe (core/base/probe.h lists them)"));
    }
    if (reason.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "probe ", name, " is listed without a reason"));
    }
    if (!listed.emplace(name, std::string(reason)).second) {
      return absl::InvalidArgumentError(absl::StrCat(where(), "probe ", name, " is listed twice"));
    }
  }
  return listed;
}

std::vector<std::string> UnhitProbes(const pb::CampaignSummary& summary,
                                     const std::map<std::string, std::string>& expected_rare) {
  std::vector<std::string> unhit;
  for (const probe::Info& info : probe::All()) {
    const std::string name(info.name);
    auto it = summary.probe_hits().find(name);
    if ((it != summary.probe_hits().end() && it->second > 0) || expected_rare.count(name) > 0) {
      continue;
    }
    unhit.push_back(absl::StrCat(name, " (", info.file, ": ", info.what, ")"));
  }
  return unhit;
}

std::string SummaryToJson(const pb::CampaignSummary& summary) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  // Printing a message of a known, valid type cannot fail.
  (void)google::protobuf::util::MessageToJsonString(summary, &json, options);
  return json;
}

absl::StatusOr<pb::CampaignSummary> SummaryFromJson(absl::string_view json) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // summaries of a newer sim merge too
  pb::CampaignSummary summary;
  const auto status =
      google::protobuf::util::JsonStringToMessage(std::string(json), &summary, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a campaign summary: ", std::string(status.message())));
  }
  if (summary.shard_count() == 0 || summary.shard_index() >= summary.shard_count()) {
    return absl::InvalidArgumentError(absl::StrCat("not a campaign summary: shard ",
                                                   summary.shard_index(), "/",
                                                   summary.shard_count(), " is not I/N, I < N"));
  }
  return summary;
}

namespace {

// What makes two summaries shards of one campaign; empty when they agree.
std::string CampaignDifference(const pb::CampaignSummary& a, const pb::CampaignSummary& b) {
  const auto nodes = [](const pb::CampaignSummary& s) { return absl::StrJoin(s.nodes(), ","); };
  if (a.first_seed() != b.first_seed()) {
    return absl::StrCat("first seed ", a.first_seed(), " vs ", b.first_seed());
  }
  if (a.seed_count() != b.seed_count()) {
    return absl::StrCat("seed count ", a.seed_count(), " vs ", b.seed_count());
  }
  if (a.shard_count() != b.shard_count()) {
    return absl::StrCat("shard count ", a.shard_count(), " vs ", b.shard_count());
  }
  if (nodes(a) != nodes(b)) return absl::StrCat("nodes ", nodes(a), " vs ", nodes(b));
  if (a.duration_ms() != b.duration_ms()) {
    return absl::StrCat("duration ", a.duration_ms(), " ms vs ", b.duration_ms(), " ms");
  }
  return "";
}

}  // namespace

MergeOutcome MergeSummaries(const std::vector<NamedSummary>& shards) {
  MergeOutcome outcome;
  pb::CampaignSummary& merged = outcome.merged;
  if (shards.empty()) {
    merged.set_shard_count(1);
    outcome.problems.push_back("no summaries to merge");
    return outcome;
  }
  const pb::CampaignSummary& reference = shards.front().summary;
  merged.set_command_line(absl::StrCat("sim merge of ", shards.size(), " summaries"));
  merged.set_first_seed(reference.first_seed());
  merged.set_seed_count(reference.seed_count());
  merged.set_minutes(reference.minutes());
  merged.set_shard_index(0);
  merged.set_shard_count(1);
  *merged.mutable_nodes() = reference.nodes();
  merged.set_duration_ms(reference.duration_ms());

  bool consistent = true;
  std::map<uint64_t, std::vector<std::string>> by_index;  // shard index -> summaries holding it
  for (const NamedSummary& shard : shards) {
    const pb::CampaignSummary& s = shard.summary;
    const std::string difference = CampaignDifference(reference, s);
    if (!difference.empty()) {
      consistent = false;
      outcome.problems.push_back(absl::StrCat(shards.front().name, " and ", shard.name,
                                              " are not shards of one campaign (", difference,
                                              ")"));
    }
    by_index[s.shard_index()].push_back(shard.name);
    merged.set_seeds_run(merged.seeds_run() + s.seeds_run());
    merged.set_seeds_passed(merged.seeds_passed() + s.seeds_passed());
    if (s.seeds_run() > 0)
      merged.set_last_seed_run(std::max(merged.last_seed_run(), s.last_seed_run()));
    // The shards ran side by side: the campaign took as long as its slowest shard.
    merged.set_wall_seconds(std::max(merged.wall_seconds(), s.wall_seconds()));
    merged.set_cpu_seconds(merged.cpu_seconds() + s.cpu_seconds());
    for (const pb::NodeCountFigures& f : s.by_nodes()) AddFigures(f, &merged);
    for (const auto& [probe, hits] : s.probe_hits()) (*merged.mutable_probe_hits())[probe] += hits;
    for (const pb::CampaignFailure& f : s.failures()) *merged.add_failures() = f;
    if (s.most_search_steps() > merged.most_search_steps()) {
      merged.set_most_search_steps(s.most_search_steps());
      merged.set_most_search_steps_seed(s.most_search_steps_seed());
    }
    merged.set_search_steps_budget(std::max(merged.search_steps_budget(), s.search_steps_budget()));
    merged.set_calm_windows(merged.calm_windows() + s.calm_windows());
    merged.set_calm_windows_settled(merged.calm_windows_settled() + s.calm_windows_settled());
    merged.set_elections_after_heal(merged.elections_after_heal() + s.elections_after_heal());
    if (s.most_elections_after_heal() > merged.most_elections_after_heal()) {
      merged.set_most_elections_after_heal(s.most_elections_after_heal());
      merged.set_most_elections_after_heal_seed(s.most_elections_after_heal_seed());
    }
    merged.set_transfers_checked(merged.transfers_checked() + s.transfers_checked());
    merged.set_proposals_refused_in_transfer(merged.proposals_refused_in_transfer() +
                                             s.proposals_refused_in_transfer());
    if (s.interrupted()) {
      merged.set_interrupted(true);
      outcome.problems.push_back(absl::StrCat("shard ", s.shard_index(), "/", s.shard_count(), " (",
                                              shard.name, ") was interrupted before its bound"));
    }
  }
  std::sort(merged.mutable_failures()->begin(), merged.mutable_failures()->end(),
            [](const pb::CampaignFailure& a, const pb::CampaignFailure& b) {
              return a.seed() < b.seed();
            });
  if (!consistent) return outcome;

  const uint64_t n = reference.shard_count();
  for (const auto& [index, names] : by_index) {
    if (names.size() > 1) {
      outcome.problems.push_back(absl::StrCat("overlap: shard ", index, "/", n, " appears in ",
                                              absl::StrJoin(names, " and "),
                                              " (its seeds ran, and are counted, more than once)"));
    }
  }
  std::vector<std::string> missing;
  for (uint64_t index = 0; index < n && missing.size() <= 20; ++index) {
    if (!by_index.count(index)) missing.push_back(absl::StrCat(index, "/", n));
  }
  if (!missing.empty()) {
    const uint64_t count = n - by_index.size();
    outcome.problems.push_back(
        absl::StrCat(count, " of ", n, " shards missing: ",
                     absl::StrJoin(missing.begin(),
                                   missing.begin() + std::min<size_t>(missing.size(), 20), ", "),
                     count > 20 ? ", ..." : ""));
  }

  // Which seeds the shards covered.
  const uint64_t first = reference.first_seed();
  if (reference.seed_count() > 0) {
    bool complete = missing.empty();
    for (const NamedSummary& shard : shards) {
      const pb::CampaignSummary& s = shard.summary;
      const uint64_t expected =
          SeedsInShard(first, s.seed_count(), Shard{s.shard_index(), s.shard_count()});
      if (s.seeds_run() < expected && !s.interrupted()) {
        complete = false;
        outcome.problems.push_back(absl::StrCat("shard ", s.shard_index(), "/", n, " (", shard.name,
                                                ") ran ", s.seeds_run(), " of its ", expected,
                                                " seeds (stopped by its time bound)"));
      } else if (s.seeds_run() < expected) {
        complete = false;
      }
    }
    if (complete) {
      outcome.notes.push_back(absl::StrCat("seeds ", first, "..",
                                           first + (reference.seed_count() - 1), " all run",
                                           by_index.size() < shards.size() ? "" : " exactly once"));
    }
  } else if (missing.empty()) {
    // Bounded by time, the shards stop at different seeds: every seed below the earliest next
    // seed of any shard ran; above it there are gaps.
    uint64_t covered_end = std::numeric_limits<uint64_t>::max();
    for (const NamedSummary& shard : shards) {
      const pb::CampaignSummary& s = shard.summary;
      const std::optional<uint64_t> start = Shard{s.shard_index(), n}.First(first);
      if (!start.has_value()) continue;
      const uint64_t next = *start + s.seeds_run() * n;
      covered_end = std::min(covered_end, next);
    }
    const uint64_t contiguous = covered_end > first ? covered_end - first : 0;
    std::string note = contiguous == 0
                           ? absl::StrCat("no contiguous run of seeds from ", first)
                           : absl::StrCat("seeds ", first, "..", covered_end - 1, " all run");
    if (merged.seeds_run() > contiguous) {
      absl::StrAppend(&note, "; ", merged.seeds_run() - contiguous,
                      " more beyond, with gaps (time-bounded shards stop at different seeds)");
    }
    outcome.notes.push_back(note);
  }
  return outcome;
}

}  // namespace kvstore::sim
