#include "node/http_service.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "kj/debug.h"
#include "net/etcd/http_guard.h"

namespace kvstore::node {
namespace {

constexpr char kJsonContentType[] = "application/json";
// What Go's http.Error and sniffing give etcd's /health answers.
constexpr char kPlainContentType[] = "text/plain; charset=utf-8";

std::string HexId(raft::NodeId id) {
  return id == raft::kNoNode ? "" : absl::StrCat(absl::Hex(id));
}

// The status page: self-contained (no external assets), it fetches /status.json every second
// and renders it. Element ids and data-* attributes are what tests and scripts may read.
constexpr char kStatusPage[] = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kvnode status</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: left; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.leader { background: #e8f5e9; }
.bad { color: #b00020; font-weight: bold; }
.muted { color: #777; }
</style>
</head>
<body>
<h1>kvnode <span id="self-name"></span> <span class="muted" id="self-id"></span></h1>
<p id="state">loading&hellip;</p>
<table id="summary">
<tr><th>leader</th><td id="leader"></td></tr>
<tr><th>term</th><td class="num" id="term"></td></tr>
<tr><th>commit index</th><td class="num" id="commit-index"></td></tr>
<tr><th>applied index</th><td class="num" id="applied-index"></td></tr>
<tr><th>db size (bytes)</th><td class="num" id="db-size"></td></tr>
<tr><th>alarms</th><td id="alarms"></td></tr>
</table>
<table id="members">
<thead><tr><th>name</th><th>id</th><th>peer URLs</th><th>role</th><th>match index</th><th>lag (entries)</th></tr></thead>
<tbody id="member-rows"></tbody>
</table>
<p class="muted" id="updated"></p>
<script>
"use strict";
function text(id, value) { document.getElementById(id).textContent = value; }
function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
}
function render(s) {
  text("self-name", s.name);
  text("self-id", s.id);
  text("leader", s.leader === "" ? "none" : s.leader_name + " (" + s.leader + ")");
  document.getElementById("leader").className = s.leader === "" ? "bad" : "";
  document.getElementById("leader").dataset.leaderId = s.leader;
  text("term", s.term);
  text("commit-index", s.commit_index);
  text("applied-index", s.applied_index);
  text("db-size", s.db_size_bytes);
  text("alarms", s.alarms.length === 0 ? "none" : s.alarms.join(", "));
  document.getElementById("alarms").className = s.alarms.length === 0 ? "" : "bad";
  text("state", s.leader === "" ? "no leader" : (s.is_leader ? "this member leads" :
       "follower; match indexes and lag are known to the leader only"));
  const rows = document.getElementById("member-rows");
  rows.replaceChildren();
  for (const m of s.members) {
    const row = document.createElement("tr");
    row.dataset.memberId = m.id;
    if (m.id === s.leader) row.className = "leader";
    cell(row, m.name, "member-name");
    cell(row, m.id, "member-id");
    cell(row, m.peer_urls.join(", "), "member-peer-urls");
    cell(row, (m.id === s.leader ? "leader" : (m.is_learner ? "learner" : "follower")) +
              (m.id === s.id ? " (this member)" : ""), "member-role");
    cell(row, m.match_index === null ? "unknown" : m.match_index, "num member-match");
    cell(row, m.lag === null ? "unknown" : m.lag, "num member-lag");
    rows.appendChild(row);
  }
  text("updated", "updated " + new Date().toISOString());
}
async function refresh() {
  try {
    const response = await fetch("status.json", {cache: "no-store"});
    render(await response.json());
  } catch (e) {
    text("state", "cannot reach the member: " + e);
    document.getElementById("state").className = "bad";
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
)html";

class StatusHttpService final : public kj::HttpService {
 public:
  StatusHttpService(Runtime& runtime, Metrics& metrics, kj::Timer& timer, Logger& log,
                    const StatusHttpOptions& options)
      : runtime_(runtime),
        metrics_(metrics),
        timer_(timer),
        log_(log),
        options_(options),
        health_success_(metrics.GetCounter("etcd_server_health_success",
                                           "The total number of successful health checks")),
        health_failures_(metrics.GetCounter("etcd_server_health_failures",
                                            "The total number of failed health checks")) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override {
    absl::string_view path(url.cStr(), url.size());
    if (const size_t query = path.find('?'); query != absl::string_view::npos) {
      path = path.substr(0, query);
    }
    // Go's http.NotFound and http.Error as etcd 3.4.23 answers them: plain text, nosniff.
    if (path != "/metrics" && path != "/health" && path != "/" && path != "/status.json") {
      kj::HttpHeaders out(table_);
      out.add("X-Content-Type-Options", "nosniff");
      return Send(response, 404, "Not Found", kPlainContentType, "404 page not found\n",
                  std::move(out));
    }
    // etcd's /metrics (promhttp) answers whatever the method; /health 405s all but GET.
    if (path == "/metrics") {
      return Send(response, 200, "OK", kPrometheusTextContentType, metrics_.Render());
    }
    if (method != kj::HttpMethod::GET) {
      kj::HttpHeaders out(table_);
      out.add("Allow", "GET");
      out.add("X-Content-Type-Options", "nosniff");
      return Send(response, 405, "Method Not Allowed", kPlainContentType, "Method Not Allowed\n",
                  std::move(out));
    }
    if (path == "/health") return Health(response);
    if (path == "/status.json") return Send(response, 200, "OK", kJsonContentType, StatusJson());
    return Send(response, 200, "OK", "text/html; charset=utf-8", kStatusPage);
  }

 private:
  kj::Promise<void> Send(Response& response, uint status, kj::StringPtr status_text,
                         kj::StringPtr content_type, std::string body) {
    return Send(response, status, status_text, content_type, std::move(body),
                kj::HttpHeaders(table_));
  }
  kj::Promise<void> Send(Response& response, uint status, kj::StringPtr status_text,
                         kj::StringPtr content_type, std::string body, kj::HttpHeaders headers) {
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, content_type);
    auto stream = response.send(status, status_text, headers, body.size());
    auto owned = kj::heap<std::string>(std::move(body));
    auto written = stream->write(owned->data(), owned->size());
    return written.attach(kj::mv(stream), kj::mv(owned));
  }

  // etcd 3.4's checkHealth: any alarm, or no leader, is unhealthy; then a read through
  // consensus (etcd's QGET) must succeed within a second.
  kj::Promise<void> Health(Response& response) {
    const net::MemberStatusInfo status = runtime_.Status();
    std::string why;
    if (!runtime_.server().Alarms().empty()) {
      why = absl::StrCat("alarm: ", absl::StrJoin(status.errors, "; "));
    } else if (status.leader == raft::kNoNode) {
      why = "no leader";
    }
    if (!why.empty()) return Unhealthy(response, why);
    server::Request read;
    read.type = server::RequestType::kRange;
    read.range.key = "health";
    read.range.keys_only = true;
    read.range.limit = 1;
    auto timeout = timer_.afterDelay(options_.health_read_timeout_ms * kj::MILLISECONDS)
                       .then([]() -> absl::Status {
                         return absl::DeadlineExceededError("no answer within the timeout");
                       });
    return runtime_.CallInternal(std::move(read))
        .then([](server::Response answer) {
          // As etcd (3.5's checkAPI): with auth enabled the probe carries no token and its read
          // is refused, but only once its read index came back through consensus.
          const ErrorCode code = CodeOf(answer.status);
          if (code == ErrorCode::kUserEmpty || code == ErrorCode::kPermissionDenied) {
            return absl::OkStatus();
          }
          return answer.status;
        })
        .exclusiveJoin(kj::mv(timeout))
        .then([this, &response](absl::Status read_status) -> kj::Promise<void> {
          if (!read_status.ok()) {
            return Unhealthy(response, absl::StrCat("read failed: ", read_status.ToString()));
          }
          health_success_.Inc();
          return Send(response, 200, "OK", kPlainContentType, R"({"health":"true"})");
        });
  }

  kj::Promise<void> Unhealthy(Response& response, const std::string& why) {
    health_failures_.Inc();
    log_.Warn("/health error", {{"reason", why}});
    return Send(response, 503, "Service Unavailable", kPlainContentType,
                "{\"health\":\"false\"}\n");
  }

  std::string StatusJson() {
    const net::MemberStatusInfo status = runtime_.Status();
    const raft::Status raft = runtime_.server().RaftStatus();
    const std::vector<server::Member> members = runtime_.Members();
    std::string leader_name;
    for (const server::Member& m : members) {
      if (m.id == status.leader) leader_name = m.name;
    }
    std::vector<std::string> alarms;
    for (const server::Alarm& alarm : runtime_.server().Alarms()) {
      alarms.push_back(JsonQuote(absl::StrCat(
          "memberID:", absl::Hex(alarm.member_id),
          " alarm:", alarm.type == server::AlarmType::kNoSpace ? "NOSPACE" : "UNKNOWN")));
    }
    std::vector<std::string> errors;
    for (const std::string& error : status.errors) errors.push_back(JsonQuote(error));
    const bool is_leader = raft.soft_state.role == raft::Role::kLeader;
    std::vector<std::string> rows;
    for (const server::Member& m : members) {
      std::vector<std::string> urls;
      for (const std::string& url : m.peer_urls) urls.push_back(JsonQuote(url));
      // The leader tracks every follower's match index (Raft §5.3); lag is how many entries
      // of the leader's log a follower has yet to store.
      std::string match = "null", lag = "null";
      if (is_leader) {
        if (auto it = raft.progress.find(m.id); it != raft.progress.end()) {
          const raft::Index match_index = m.id == status.id ? raft.last_index : it->second.match;
          match = absl::StrCat(match_index);
          lag = absl::StrCat(raft.last_index - std::min(raft.last_index, match_index));
        }
      }
      rows.push_back(absl::StrCat(
          "{\"id\":", JsonQuote(HexId(m.id)), ",\"name\":", JsonQuote(m.name), ",\"peer_urls\":[",
          absl::StrJoin(urls, ","), "],\"is_learner\":", m.is_learner ? "true" : "false",
          ",\"match_index\":", match, ",\"lag\":", lag, "}"));
    }
    return absl::StrCat(
        "{\"name\":", JsonQuote(options_.name), ",\"id\":", JsonQuote(HexId(status.id)),
        ",\"leader\":", JsonQuote(HexId(status.leader)),
        ",\"leader_name\":", JsonQuote(leader_name),
        ",\"is_leader\":", is_leader ? "true" : "false", ",\"term\":", status.term,
        ",\"commit_index\":", status.commit_index, ",\"applied_index\":", status.applied_index,
        ",\"last_index\":", raft.last_index, ",\"db_size_bytes\":", status.db_size_bytes,
        ",\"is_learner\":", status.is_learner ? "true" : "false", ",\"alarms\":[",
        absl::StrJoin(alarms, ","), "],\"errors\":[", absl::StrJoin(errors, ","), "],\"members\":[",
        absl::StrJoin(rows, ","), "]}\n");
  }

  Runtime& runtime_;
  Metrics& metrics_;
  kj::Timer& timer_;
  Logger& log_;
  const StatusHttpOptions options_;
  kj::HttpHeaderTable table_;  // for response headers
  Counter& health_success_;
  Counter& health_failures_;
};

}  // namespace

kj::Own<kj::HttpService> NewStatusHttpService(Runtime& runtime, Metrics& metrics, kj::Timer& timer,
                                              Logger& log, const StatusHttpOptions& options) {
  return kj::heap<StatusHttpService>(runtime, metrics, timer, log, options);
}

HttpListener::HttpListener(kj::Timer& timer, kj::Own<kj::ConnectionReceiver> receiver,
                           kj::HttpService& service)
    : timer_(timer),
      receiver_(kj::mv(receiver)),
      server_(timer, header_table_, service),
      connections_(*this),
      serving_(AcceptLoop().eagerlyEvaluate(nullptr)) {}

kj::Promise<void> HttpListener::AcceptLoop() {
  return receiver_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    connections_.add(net::etcd::ServeCheckedHttp(server_, timer_, kj::mv(stream)));
    return AcceptLoop();
  });
}

void HttpListener::taskFailed(kj::Exception&& exception) { KJ_LOG(ERROR, exception); }

kj::Promise<kj::Own<HttpListener>> HttpListener::Listen(kj::Network& network, kj::Timer& timer,
                                                        kj::StringPtr address,
                                                        kj::HttpService& service) {
  return network.parseAddress(address).then([&timer, &service](kj::Own<kj::NetworkAddress> parsed) {
    return kj::heap<HttpListener>(timer, parsed->listen(), service);
  });
}

}  // namespace kvstore::node
