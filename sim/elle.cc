#include "sim/elle.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/raft/rand.h"

namespace kvstore::sim::elle {
namespace {

constexpr uint8_t kWw = static_cast<uint8_t>(EdgeKind::kWw);
constexpr uint8_t kWr = static_cast<uint8_t>(EdgeKind::kWr);
constexpr uint8_t kRw = static_cast<uint8_t>(EdgeKind::kRw);
constexpr uint8_t kRt = static_cast<uint8_t>(EdgeKind::kRealtime);
constexpr int kNone = -1;

std::string FormatList(const std::vector<int64_t>& list) {
  return absl::StrCat("[", absl::StrJoin(list, " "), "]");
}

// Where an appended element came from.
struct Append {
  int txn = kNone;
  bool last_of_txn = true;  // the writer appended nothing to this key after it
};

struct Read {
  int txn;
  const std::vector<int64_t>* list;
};

// One edge of the merged graph (CSR): every kind of dependency between a pair, with a key that
// justifies each data dependency.
struct Edge {
  int to;
  uint8_t mask;
  int key[3];  // for ww, wr, rw
};

int KindIndex(uint8_t kind) { return kind == kWw ? 0 : kind == kWr ? 1 : 2; }

class Checker {
 public:
  Checker(const std::vector<Txn>& history, const CheckOptions& options)
      : history_(history), options_(options) {}

  CheckResult Run() {
    InternKeys();
    IndexAppends();
    CheckReads();
    InferOrders();
    BuildGraph();
    FindCycles();
    return std::move(result_);
  }

 private:
  void Report(Anomaly anomaly, std::string description, std::vector<size_t> cycle = {},
              std::vector<EdgeKind> edges = {}) {
    result_.valid = false;
    if (result_.findings.size() >= options_.max_findings) {
      ++result_.findings_not_kept;
      return;
    }
    Finding finding;
    finding.anomaly = anomaly;
    finding.description = std::move(description);
    finding.cycle = std::move(cycle);
    finding.edges = std::move(edges);
    result_.findings.push_back(std::move(finding));
  }

  std::string Name(int txn) const {
    return absl::StrCat("T", txn, " (", FormatTxn(history_[static_cast<size_t>(txn)]), ")");
  }

  void InternKeys() {
    for (const Txn& txn : history_) {
      for (const MicroOp& op : txn.ops) {
        auto [it, inserted] = key_ids_.try_emplace(op.key, static_cast<int>(keys_.size()));
        if (inserted) keys_.push_back(op.key);
      }
    }
    orders_.resize(keys_.size());
    bad_order_.assign(keys_.size(), false);
    reads_.resize(keys_.size());
  }

  int KeyId(const std::string& key) const { return key_ids_.at(key); }

  void IndexAppends() {
    for (size_t t = 0; t < history_.size(); ++t) {
      // The last element each key got from this transaction.
      absl::flat_hash_map<int, int64_t> last;
      for (const MicroOp& op : history_[t].ops) {
        if (op.kind != MicroOp::Kind::kAppend) continue;
        const int key = KeyId(op.key);
        auto [it, inserted] = appends_.try_emplace(std::make_pair(key, op.value));
        if (!inserted) {
          Report(Anomaly::kDuplicateAppend,
                 absl::StrCat("duplicate-append: ", op.value, " appended to ", op.key, " by ",
                              Name(it->second.txn), " and by ", Name(static_cast<int>(t))));
          continue;
        }
        it->second.txn = static_cast<int>(t);
        if (auto previous = last.find(key); previous != last.end()) {
          appends_[std::make_pair(key, previous->second)].last_of_txn = false;
        }
        last[key] = op.value;
      }
    }
  }

  // Single reads: garbage, aborted (G1a), intermediate (G1b), duplicates, and each committed
  // transaction's agreement with itself (internal).
  void CheckReads() {
    for (size_t t = 0; t < history_.size(); ++t) {
      const Txn& txn = history_[t];
      if (txn.type != TxnType::kOk) continue;
      // Per key: what this transaction's own reads and appends say the list is (known: a read
      // was seen; else only its own appends, which must end the next read).
      struct State {
        bool known = false;
        std::vector<int64_t> list;
      };
      std::map<int, State> state;
      for (const MicroOp& op : txn.ops) {
        const int key = KeyId(op.key);
        State& s = state[key];
        if (op.kind == MicroOp::Kind::kAppend) {
          s.list.push_back(op.value);
          continue;
        }
        if (!op.read.has_value()) continue;
        const std::vector<int64_t>& list = *op.read;
        reads_[static_cast<size_t>(key)].push_back(Read{static_cast<int>(t), &list});
        const bool consistent =
            s.known ? list == s.list
                    : list.size() >= s.list.size() &&
                          std::equal(s.list.begin(), s.list.end(), list.end() - s.list.size());
        if (!consistent) {
          Report(Anomaly::kInternal,
                 absl::StrCat("internal: ", Name(static_cast<int>(t)), " read ", op.key, " ",
                              FormatList(list), " but its own earlier ",
                              s.known ? "reads and appends give " : "appends must end it: ",
                              FormatList(s.list)));
        }
        s.known = true;
        s.list = list;
        CheckLast(static_cast<int>(t), op.key, key, list);
      }
    }
  }

  // A read ending in an element its writer followed by another append to the key (G1b).
  void CheckLast(int reader, const std::string& key_name, int key,
                 const std::vector<int64_t>& list) {
    if (list.empty()) return;
    auto it = appends_.find(std::make_pair(key, list.back()));
    if (it == appends_.end() || it->second.last_of_txn || it->second.txn == reader) return;
    if (history_[static_cast<size_t>(it->second.txn)].type == TxnType::kFail) return;  // G1a
    Report(Anomaly::kG1b,
           absl::StrCat("G1b (intermediate read): ", Name(reader), " read ", key_name, " ",
                        FormatList(list), " ending in ", list.back(), ", which ",
                        Name(it->second.txn), " followed by a later append to ", key_name));
  }

  // Every element of a list read: appended once (no duplicates), by someone (no garbage), who
  // did not fail (G1a). Run on each key's longest read when the others are its prefixes, so
  // the cost is the number of elements, not the total length of all reads.
  void CheckElements(int reader, const std::string& key_name, int key,
                     const std::vector<int64_t>& list) {
    absl::flat_hash_set<int64_t> seen;
    seen.reserve(list.size());
    for (const int64_t value : list) {
      if (!seen.insert(value).second) {
        Report(Anomaly::kDuplicateElements,
               absl::StrCat("duplicate-elements: ", Name(reader), " read ", key_name, " ",
                            FormatList(list), " with ", value, " twice"));
        bad_order_[static_cast<size_t>(key)] = true;
      }
      auto it = appends_.find(std::make_pair(key, value));
      if (it == appends_.end()) {
        Report(Anomaly::kGarbageRead,
               absl::StrCat("garbage-read: ", Name(reader), " read ", key_name, " ",
                            FormatList(list), " with ", value, ", which no transaction appended"));
        bad_order_[static_cast<size_t>(key)] = true;
        continue;
      }
      if (history_[static_cast<size_t>(it->second.txn)].type == TxnType::kFail) {
        Report(Anomaly::kG1a, absl::StrCat("G1a (aborted read): ", Name(reader), " read ", key_name,
                                           " ", FormatList(list), " with ", value,
                                           ", appended by failed ", Name(it->second.txn)));
      }
    }
  }

  // Each key's version order: its longest read, of which every other read must be a prefix.
  void InferOrders() {
    for (size_t key = 0; key < keys_.size(); ++key) {
      const std::vector<Read>& reads = reads_[key];
      if (reads.empty()) continue;
      const Read* longest = &reads.front();
      for (const Read& read : reads) {
        if (read.list->size() > longest->list->size()) longest = &read;
      }
      const Read* incompatible = nullptr;
      for (const Read& read : reads) {
        if (!std::equal(read.list->begin(), read.list->end(), longest->list->begin())) {
          incompatible = &read;
          break;
        }
      }
      const int k = static_cast<int>(key);
      if (incompatible == nullptr) {
        CheckElements(longest->txn, keys_[key], k, *longest->list);
      } else {
        Report(Anomaly::kIncompatibleOrder,
               absl::StrCat("incompatible-order: ", keys_[key], " read as ",
                            FormatList(*incompatible->list), " by ", Name(incompatible->txn),
                            " and as ", FormatList(*longest->list), " by ", Name(longest->txn),
                            ": the first is not a prefix of the second"));
        bad_order_[key] = true;
        for (const Read& read : reads) CheckElements(read.txn, keys_[key], k, *read.list);
      }
      if (bad_order_[key]) continue;
      orders_[key] = *longest->list;
    }
  }

  int Writer(int key, int64_t value) const {
    auto it = appends_.find(std::make_pair(key, value));
    return it == appends_.end() ? kNone : it->second.txn;
  }

  void BuildGraph() {
    const size_t n = history_.size();
    in_graph_.assign(n, false);
    for (size_t t = 0; t < n; ++t) in_graph_[t] = history_[t].type == TxnType::kOk;
    // An info transaction happened if a read shows one of its appends.
    for (size_t key = 0; key < keys_.size(); ++key) {
      for (int64_t value : orders_[key]) {
        const int w = Writer(static_cast<int>(key), value);
        if (w != kNone && history_[static_cast<size_t>(w)].type == TxnType::kInfo) {
          in_graph_[static_cast<size_t>(w)] = true;
        }
      }
    }
    struct Raw {
      int from, to;
      uint8_t kind;
      int key;
    };
    std::vector<Raw> raw;
    auto add = [&](int from, int to, uint8_t kind, int key) {
      if (from == kNone || to == kNone || from == to) return;
      if (!in_graph_[static_cast<size_t>(from)] || !in_graph_[static_cast<size_t>(to)]) return;
      raw.push_back(Raw{from, to, kind, key});
    };
    for (size_t k = 0; k < keys_.size(); ++k) {
      if (bad_order_[k]) continue;
      const int key = static_cast<int>(k);
      const std::vector<int64_t>& order = orders_[k];
      for (size_t i = 0; i + 1 < order.size(); ++i) {
        add(Writer(key, order[i]), Writer(key, order[i + 1]), kWw, key);
      }
      for (const Read& read : reads_[k]) {
        const size_t j = read.list->size();
        if (j > 0) add(Writer(key, order[j - 1]), read.txn, kWr, key);
        if (j < order.size()) add(read.txn, Writer(key, order[j]), kRw, key);
      }
    }
    if (options_.realtime) AddRealtimeEdges([&](int from, int to) { add(from, to, kRt, kNone); });

    std::sort(raw.begin(), raw.end(), [](const Raw& a, const Raw& b) {
      return a.from != b.from ? a.from < b.from : a.to < b.to;
    });
    offsets_.assign(n + 1, 0);
    for (size_t i = 0; i < raw.size();) {
      Edge edge{raw[i].to, 0, {kNone, kNone, kNone}};
      const int from = raw[i].from;
      for (; i < raw.size() && raw[i].from == from && raw[i].to == edge.to; ++i) {
        edge.mask |= raw[i].kind;
        if (raw[i].kind != kRt && edge.key[KindIndex(raw[i].kind)] == kNone) {
          edge.key[KindIndex(raw[i].kind)] = raw[i].key;
        }
      }
      edges_.push_back(edge);
      ++offsets_[static_cast<size_t>(from) + 1];
    }
    for (size_t t = 0; t < n; ++t) offsets_[t + 1] += offsets_[t];
    for (size_t t = 0; t < n; ++t) result_.transactions += in_graph_[t] ? 1 : 0;
    result_.edges = edges_.size();
  }

  // T1 -> T2 when T1 completed before T2 was invoked, transitively reduced: the frontier holds
  // the completed transactions no completed transaction follows yet; an invocation takes an edge
  // from each, and a completion replaces in the frontier everything its invocation saw.
  template <typename AddEdge>
  void AddRealtimeEdges(AddEdge add_edge) {
    struct Event {
      int64_t time;
      bool complete;  // invocations first at equal times: an edge needs a strictly earlier end
      int txn;
    };
    std::vector<Event> events;
    for (size_t t = 0; t < history_.size(); ++t) {
      if (!in_graph_[t]) continue;
      events.push_back(Event{history_[t].invoke_ms, false, static_cast<int>(t)});
      if (history_[t].type == TxnType::kOk) {
        events.push_back(Event{history_[t].complete_ms, true, static_cast<int>(t)});
      }
    }
    std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
      if (a.time != b.time) return a.time < b.time;
      if (a.complete != b.complete) return !a.complete;
      return a.txn < b.txn;
    });
    std::vector<std::vector<int>> seen(history_.size());
    std::vector<bool> in_frontier(history_.size(), false);
    std::vector<int> frontier;
    for (const Event& event : events) {
      const auto t = static_cast<size_t>(event.txn);
      if (!event.complete) {
        seen[t] = frontier;
        for (int from : frontier) add_edge(from, event.txn);
        continue;
      }
      for (int before : seen[t]) in_frontier[static_cast<size_t>(before)] = false;
      std::vector<int>().swap(seen[t]);
      frontier.erase(std::remove_if(frontier.begin(), frontier.end(),
                                    [&](int f) { return !in_frontier[static_cast<size_t>(f)]; }),
                     frontier.end());
      frontier.push_back(event.txn);
      in_frontier[t] = true;
    }
  }

  // Tarjan's strongly connected components over the edges whose mask meets `mask`, restricted to
  // the nodes `nodes` (iterative: histories are long). Sets component[] for them; returns the
  // components with more than one node.
  std::vector<std::vector<int>> Components(const std::vector<int>& nodes, uint8_t mask,
                                           int restrict_to, std::vector<int>* component) {
    std::vector<std::vector<int>> found;
    for (int v : nodes) {
      index_[static_cast<size_t>(v)] = kNone;
      on_stack_[static_cast<size_t>(v)] = false;
    }
    int counter = 0;
    std::vector<int> stack;
    struct Frame {
      int node;
      size_t next;
    };
    std::vector<Frame> frames;
    auto allowed = [&](int v) {
      return restrict_to == kNone || (*outer_)[static_cast<size_t>(v)] == restrict_to;
    };
    for (int root : nodes) {
      if (index_[static_cast<size_t>(root)] != kNone) continue;
      frames.push_back(Frame{root, offsets_[static_cast<size_t>(root)]});
      index_[static_cast<size_t>(root)] = low_[static_cast<size_t>(root)] = counter++;
      stack.push_back(root);
      on_stack_[static_cast<size_t>(root)] = true;
      while (!frames.empty()) {
        Frame& frame = frames.back();
        const auto u = static_cast<size_t>(frame.node);
        if (frame.next < offsets_[u + 1]) {
          const Edge& edge = edges_[frame.next++];
          const auto v = static_cast<size_t>(edge.to);
          if ((edge.mask & mask) == 0 || !allowed(edge.to)) continue;
          if (index_[v] == kNone) {
            index_[v] = low_[v] = counter++;
            stack.push_back(edge.to);
            on_stack_[v] = true;
            frames.push_back(Frame{edge.to, offsets_[v]});
          } else if (on_stack_[v]) {
            low_[u] = std::min(low_[u], index_[v]);
          }
          continue;
        }
        if (low_[u] == index_[u]) {
          std::vector<int> members;
          int w;
          do {
            w = stack.back();
            stack.pop_back();
            on_stack_[static_cast<size_t>(w)] = false;
            (*component)[static_cast<size_t>(w)] = static_cast<int>(u);
            members.push_back(w);
          } while (w != frame.node);
          if (members.size() > 1) found.push_back(std::move(members));
        }
        const int done = frame.node;
        frames.pop_back();
        if (!frames.empty()) {
          const auto parent = static_cast<size_t>(frames.back().node);
          low_[parent] = std::min(low_[parent], low_[static_cast<size_t>(done)]);
        }
      }
    }
    return found;
  }

  // Shortest path from `from` to `to` over edges meeting `mask` inside the component `c`
  // (component_[]), as the nodes after `from`; empty if none (or the budget ran out).
  std::vector<int> Path(int from, int to, uint8_t mask, int c) {
    ++stamp_;
    std::vector<int> queue = {from};
    visited_[static_cast<size_t>(from)] = stamp_;
    for (size_t head = 0; head < queue.size(); ++head) {
      const auto u = static_cast<size_t>(queue[head]);
      for (size_t e = offsets_[u]; e < offsets_[u + 1]; ++e) {
        if (budget_ == 0) return {};
        --budget_;
        const Edge& edge = edges_[e];
        const auto v = static_cast<size_t>(edge.to);
        if ((edge.mask & mask) == 0 || component_[v] != c || visited_[v] == stamp_) continue;
        visited_[v] = stamp_;
        parent_[v] = static_cast<int>(u);
        if (edge.to == to) {
          std::vector<int> path;
          for (int w = to; w != from; w = parent_[static_cast<size_t>(w)]) path.push_back(w);
          std::reverse(path.begin(), path.end());
          return path;
        }
        queue.push_back(edge.to);
      }
    }
    return {};
  }

  const Edge* FindEdge(int from, int to) const {
    for (size_t e = offsets_[static_cast<size_t>(from)];
         e < offsets_[static_cast<size_t>(from) + 1]; ++e) {
      if (edges_[e].to == to) return &edges_[e];
    }
    return nullptr;
  }

  // A cycle through an edge of kind `required`, the rest over `path_mask`, inside component c:
  // the shortest of the first few found. As (nodes, the kind of the edge leaving each).
  std::pair<std::vector<int>, std::vector<uint8_t>> CycleThrough(const std::vector<int>& members,
                                                                 uint8_t required,
                                                                 uint8_t path_mask, int c) {
    constexpr int kMoreTries = 16;  // after the first cycle, looking for a shorter one
    std::vector<int> best;
    int tries_left = kMoreTries;
    for (int u : members) {
      for (size_t e = offsets_[static_cast<size_t>(u)];
           e < offsets_[static_cast<size_t>(u) + 1] && budget_ > 0; ++e) {
        const Edge& edge = edges_[e];
        if ((edge.mask & required) == 0 || component_[static_cast<size_t>(edge.to)] != c) {
          continue;
        }
        std::vector<int> path = edge.to == u ? std::vector<int>{} : Path(edge.to, u, path_mask, c);
        if (path.empty()) continue;
        if (best.empty() || path.size() + 1 < best.size()) {
          best = {u, edge.to};
          best.insert(best.end(), path.begin(), path.end() - 1);
        }
        if (best.size() == 2 || --tries_left == 0) break;
      }
      if (!best.empty() && (best.size() == 2 || tries_left == 0)) break;
    }
    std::vector<uint8_t> kinds;
    for (size_t i = 0; i < best.size(); ++i) {
      const Edge* edge = FindEdge(best[i], best[(i + 1) % best.size()]);
      const uint8_t mask = edge->mask & (i == 0 ? required : path_mask);
      uint8_t kind = kRw;
      for (uint8_t k : {kWw, kWr, kRt, kRw}) {
        if (mask & k) {
          kind = k;
          break;
        }
      }
      kinds.push_back(kind);
    }
    return {best, kinds};
  }

  void ReportCycle(Anomaly anomaly, const std::vector<int>& cycle,
                   const std::vector<uint8_t>& kinds) {
    std::string text = absl::StrCat(AnomalyName(anomaly), ": ");
    std::vector<size_t> txns;
    std::vector<EdgeKind> edges;
    for (size_t i = 0; i < cycle.size(); ++i) {
      const int next = cycle[(i + 1) % cycle.size()];
      const Edge* edge = FindEdge(cycle[i], next);
      const auto kind = static_cast<EdgeKind>(kinds[i]);
      std::string label = EdgeKindName(kind);
      if (kinds[i] != kRt) {
        absl::StrAppend(&label, " ", keys_[static_cast<size_t>(edge->key[KindIndex(kinds[i])])]);
      }
      absl::StrAppend(&text, Name(cycle[i]), " -", label, "-> ");
      txns.push_back(static_cast<size_t>(cycle[i]));
      edges.push_back(kind);
    }
    absl::StrAppend(&text, "T", cycle.front());
    Report(anomaly, std::move(text), std::move(txns), std::move(edges));
  }

  // One component of the whole graph: the weakest class of cycle it holds (without real-time
  // edges first), reported with its shortest cycle found.
  void Classify(const std::vector<int>& members, int outer) {
    struct Class {
      Anomaly anomaly;
      uint8_t required;
      uint8_t path;
    };
    const Class classes[] = {
        {Anomaly::kG0, kWw, kWw},
        {Anomaly::kG1c, kWr, kWw | kWr},
        {Anomaly::kGSingle, kRw, kWw | kWr},
        {Anomaly::kG2, kRw, kWw | kWr | kRw},
        {Anomaly::kG0Realtime, kWw, kWw | kRt},
        {Anomaly::kG1cRealtime, kWr, kWw | kWr | kRt},
        {Anomaly::kGSingleRealtime, kRw, kWw | kWr | kRt},
        {Anomaly::kG2Realtime, kRw, kWw | kWr | kRw | kRt},
    };
    for (const Class& cls : classes) {
      if (budget_ == 0) break;
      // The components of this class's edges inside the outer one: a required edge inside one
      // of them closes a cycle (when the path may use its kind, one surely exists).
      const uint8_t mask = cls.path | cls.required;
      const std::vector<std::vector<int>> inner = Components(members, mask, outer, &component_);
      for (const std::vector<int>& component : inner) {
        const int c = component_[static_cast<size_t>(component.front())];
        auto [cycle, kinds] = CycleThrough(component, cls.required, cls.path, c);
        if (!cycle.empty()) {
          ReportCycle(cls.anomaly, cycle, kinds);
          return;
        }
      }
    }
    Report(Anomaly::kCycle,
           absl::StrCat("cycle: ", members.size(), " transactions depend on each other (",
                        Name(members.front()),
                        " among them); the search budget ran out before "
                        "classifying it"));
  }

  void FindCycles() {
    const size_t n = history_.size();
    index_.assign(n, kNone);
    low_.assign(n, 0);
    on_stack_.assign(n, false);
    outer_component_.assign(n, kNone);
    component_.assign(n, kNone);
    visited_.assign(n, 0);
    parent_.assign(n, kNone);
    budget_ = options_.search_budget_steps;
    std::vector<int> nodes;
    for (size_t t = 0; t < n; ++t) {
      if (in_graph_[t]) nodes.push_back(static_cast<int>(t));
    }
    outer_ = &outer_component_;
    const std::vector<std::vector<int>> components =
        Components(nodes, kWw | kWr | kRw | kRt, kNone, &outer_component_);
    for (const std::vector<int>& members : components) {
      Classify(members, outer_component_[static_cast<size_t>(members.front())]);
    }
  }

  const std::vector<Txn>& history_;
  CheckOptions options_;
  CheckResult result_;
  absl::flat_hash_map<std::string, int> key_ids_;
  std::vector<std::string> keys_;
  absl::flat_hash_map<std::pair<int, int64_t>, Append> appends_;
  std::vector<std::vector<Read>> reads_;  // by key: every committed read
  std::vector<std::vector<int64_t>> orders_;
  std::vector<bool> bad_order_;
  std::vector<bool> in_graph_;
  std::vector<size_t> offsets_;
  std::vector<Edge> edges_;
  // Search state.
  std::vector<int> index_, low_, outer_component_, component_, visited_, parent_;
  std::vector<bool> on_stack_;
  const std::vector<int>* outer_ = nullptr;
  int stamp_ = 0;
  uint64_t budget_ = 0;
};

absl::StatusOr<int64_t> ParseInt(absl::string_view text, absl::string_view what, int line) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line, ": ", what, " '", text, "' is not an integer"));
  }
  return value;
}

}  // namespace

const char* AnomalyName(Anomaly anomaly) {
  switch (anomaly) {
    case Anomaly::kG0:
      return "G0";
    case Anomaly::kG1c:
      return "G1c";
    case Anomaly::kGSingle:
      return "G-single";
    case Anomaly::kG2:
      return "G2";
    case Anomaly::kG0Realtime:
      return "G0-realtime";
    case Anomaly::kG1cRealtime:
      return "G1c-realtime";
    case Anomaly::kGSingleRealtime:
      return "G-single-realtime";
    case Anomaly::kG2Realtime:
      return "G2-realtime";
    case Anomaly::kCycle:
      return "cycle";
    case Anomaly::kG1a:
      return "G1a";
    case Anomaly::kG1b:
      return "G1b";
    case Anomaly::kInternal:
      return "internal";
    case Anomaly::kGarbageRead:
      return "garbage-read";
    case Anomaly::kDuplicateElements:
      return "duplicate-elements";
    case Anomaly::kIncompatibleOrder:
      return "incompatible-order";
    case Anomaly::kDuplicateAppend:
      return "duplicate-append";
  }
  return "?";
}

const char* EdgeKindName(EdgeKind kind) {
  switch (kind) {
    case EdgeKind::kWw:
      return "ww";
    case EdgeKind::kWr:
      return "wr";
    case EdgeKind::kRw:
      return "rw";
    case EdgeKind::kRealtime:
      return "realtime";
  }
  return "?";
}

std::string CheckResult::Summary() const {
  if (valid) {
    return absl::StrCat("valid: ", transactions, " transactions, ", edges, " edges");
  }
  std::map<std::string, int> counts;
  for (const Finding& finding : findings) ++counts[AnomalyName(finding.anomaly)];
  std::string text = absl::StrCat(
      "not strictly serializable: ",
      absl::StrJoin(counts, ", ",
                    [](std::string* out, const std::pair<const std::string, int>& count) {
                      absl::StrAppend(out, count.first, " x", count.second);
                    }));
  if (findings_not_kept > 0) absl::StrAppend(&text, " and ", findings_not_kept, " more");
  absl::StrAppend(&text, "; ", findings.front().description);
  return text;
}

CheckResult Check(const std::vector<Txn>& history, const CheckOptions& options) {
  return Checker(history, options).Run();
}

std::string FormatTxn(const Txn& txn) {
  const char* type = txn.type == TxnType::kOk ? "ok" : txn.type == TxnType::kFail ? "fail" : "info";
  std::string text = absl::StrCat("p", txn.process, " ", type, " @", txn.invoke_ms, "-");
  if (txn.type == TxnType::kInfo) {
    absl::StrAppend(&text, "?");
  } else {
    absl::StrAppend(&text, txn.complete_ms);
  }
  for (const MicroOp& op : txn.ops) {
    if (op.kind == MicroOp::Kind::kAppend) {
      absl::StrAppend(&text, " [append ", op.key, " ", op.value, "]");
    } else {
      absl::StrAppend(&text, " [r ", op.key, " ",
                      op.read.has_value() ? FormatList(*op.read) : std::string("?"), "]");
    }
  }
  return text;
}

absl::StatusOr<std::vector<Txn>> ParseHistory(absl::string_view text) {
  std::vector<Txn> history;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ';');
    std::vector<absl::string_view> head = absl::StrSplit(parts[0], ' ', absl::SkipWhitespace());
    if (head.size() < 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_number, ": expected 'TYPE PROCESS INVOKE COMPLETE ops', got '", line, "'"));
    }
    Txn txn;
    if (head[0] == "ok") {
      txn.type = TxnType::kOk;
    } else if (head[0] == "fail") {
      txn.type = TxnType::kFail;
    } else if (head[0] == "info") {
      txn.type = TxnType::kInfo;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": type '", head[0],
                                                     "' is not one of ok, fail, info"));
    }
    absl::StatusOr<int64_t> number = ParseInt(head[1], "process", line_number);
    if (!number.ok()) return number.status();
    txn.process = *number;
    number = ParseInt(head[2], "invoke time", line_number);
    if (!number.ok()) return number.status();
    txn.invoke_ms = *number;
    if (head[3] == "-") {
      if (txn.type != TxnType::kInfo) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_number, ": only an info transaction has no completion"));
      }
      txn.complete_ms = std::numeric_limits<int64_t>::max();
    } else {
      number = ParseInt(head[3], "completion time", line_number);
      if (!number.ok()) return number.status();
      txn.complete_ms = *number;
    }
    // The first micro-op follows the header on the same segment.
    std::vector<std::vector<absl::string_view>> ops;
    ops.emplace_back(head.begin() + 4, head.end());
    for (size_t i = 1; i < parts.size(); ++i) {
      ops.push_back(absl::StrSplit(parts[i], ' ', absl::SkipWhitespace()));
    }
    for (const std::vector<absl::string_view>& words : ops) {
      if (words.empty()) continue;
      MicroOp op;
      if (words[0] == "append") {
        if (words.size() != 3) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line_number, ": expected 'append KEY VALUE'"));
        }
        op.kind = MicroOp::Kind::kAppend;
        op.key = std::string(words[1]);
        number = ParseInt(words[2], "value", line_number);
        if (!number.ok()) return number.status();
        op.value = *number;
      } else if (words[0] == "r") {
        if (words.size() < 2) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line_number, ": expected 'r KEY [ELEMENTS...]'"));
        }
        op.kind = MicroOp::Kind::kRead;
        op.key = std::string(words[1]);
        if (txn.type == TxnType::kOk) {
          op.read.emplace();
          for (size_t i = 2; i < words.size(); ++i) {
            number = ParseInt(words[i], "element", line_number);
            if (!number.ok()) return number.status();
            op.read->push_back(*number);
          }
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": micro-op '",
                                                       words[0], "' is not 'append' or 'r'"));
      }
      txn.ops.push_back(std::move(op));
    }
    history.push_back(std::move(txn));
  }
  return history;
}

std::vector<Txn> RandomHistory(const RandomHistoryOptions& options) {
  raft::SplitMix64 rng(options.seed);
  struct Planned {
    Txn txn;
    int64_t effect_ms;  // when it takes effect
    bool applies;
  };
  std::vector<Planned> planned;
  planned.reserve(options.transactions);
  std::vector<int64_t> next_value(static_cast<size_t>(options.keys), 1);
  std::vector<int64_t> free_at_ms(static_cast<size_t>(options.processes), 0);
  std::vector<int64_t> process_ids(static_cast<size_t>(options.processes));
  for (int p = 0; p < options.processes; ++p) process_ids[static_cast<size_t>(p)] = p;
  while (planned.size() < options.transactions) {
    const auto slot = static_cast<size_t>(rng.Uniform(static_cast<uint64_t>(options.processes)));
    Planned p;
    p.txn.process = process_ids[slot];
    p.txn.invoke_ms = free_at_ms[slot] + static_cast<int64_t>(rng.Uniform(5));
    p.effect_ms = p.txn.invoke_ms + 1 + static_cast<int64_t>(rng.Uniform(20));
    p.txn.complete_ms = p.effect_ms + static_cast<int64_t>(rng.Uniform(20));
    free_at_ms[slot] = p.txn.complete_ms + 1;
    const uint64_t outcome = rng.Uniform(100);
    p.txn.type = outcome < 5 ? TxnType::kFail : outcome < 10 ? TxnType::kInfo : TxnType::kOk;
    p.applies = p.txn.type == TxnType::kOk || (p.txn.type == TxnType::kInfo && rng.Percent(50));
    if (p.txn.type == TxnType::kInfo) {
      p.txn.complete_ms = std::numeric_limits<int64_t>::max();
      process_ids[slot] += options.processes;
    }
    for (uint64_t i = 0, n = 1 + rng.Uniform(4); i < n; ++i) {
      MicroOp op;
      const auto key = static_cast<size_t>(rng.Uniform(static_cast<uint64_t>(options.keys)));
      op.key = absl::StrCat("k", key);
      if (rng.Percent(50)) {
        op.kind = MicroOp::Kind::kAppend;
        op.value = next_value[key]++;
      }
      p.txn.ops.push_back(std::move(op));
    }
    planned.push_back(std::move(p));
  }
  std::vector<size_t> by_effect(planned.size());
  for (size_t i = 0; i < by_effect.size(); ++i) by_effect[i] = i;
  std::stable_sort(by_effect.begin(), by_effect.end(),
                   [&](size_t a, size_t b) { return planned[a].effect_ms < planned[b].effect_ms; });
  absl::flat_hash_map<std::string, std::vector<int64_t>> lists;
  for (size_t i : by_effect) {
    Planned& p = planned[i];
    if (!p.applies) continue;
    for (MicroOp& op : p.txn.ops) {
      std::vector<int64_t>& list = lists[op.key];
      if (op.kind == MicroOp::Kind::kAppend) {
        list.push_back(op.value);
      } else if (p.txn.type == TxnType::kOk) {
        op.read = list;
      }
    }
  }
  std::vector<Txn> history;
  history.reserve(planned.size());
  for (Planned& p : planned) history.push_back(std::move(p.txn));
  return history;
}

}  // namespace kvstore::sim::elle
